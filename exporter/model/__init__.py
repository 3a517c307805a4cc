"""Plain, immutable data: what adapters hand over and what checks read. Imports nothing else of lbdoctor."""
