"""The `modelline` command line: thin subcommands over the library."""
