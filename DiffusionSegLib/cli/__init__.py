"""The command line: `python -m DiffusionSegLib <command>`.

main       the parser and the command table
protocol   the event protocol around a job: stdout for events, signals, cancel, exit codes
console    progress bars and the closing summary for a person at a terminal (summary)
arguments  options shared by several commands
commands/  one module per command
"""
