"""The plan: the logical description both API generations build, and its compiled form."""
