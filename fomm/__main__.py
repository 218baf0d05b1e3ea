"""``python -m fomm`` → the command line."""

from fomm.cli.main import main

if __name__ == "__main__":
    main()
