"""The engine: runs a compiled plan over batches (embedded in this process by default)."""
