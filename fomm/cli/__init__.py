"""The ``fomm`` command line: argument parsing and one module per group of subcommands; the top
layer, which nothing in the package imports."""
