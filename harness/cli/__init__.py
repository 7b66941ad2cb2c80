"""The command line: Typer commands that parse options, call the layers below and print."""
