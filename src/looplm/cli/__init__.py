"""The command line: each module parses one command, builds the pieces and calls the library."""
