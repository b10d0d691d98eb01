"""One module per CLI command. Each has `add_arguments(parser)` and `main(args) -> exit code`;
`DiffusionSegLib.cli.main.COMMANDS` lists them, so adding a command is one module and one line."""
