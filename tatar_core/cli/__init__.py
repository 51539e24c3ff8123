"""The `tatar` command line (`tatar_core.cli.main`)."""
