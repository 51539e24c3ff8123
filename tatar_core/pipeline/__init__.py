"""The stage runner, cache keys (code versions from the imports) and the `tatar plan` text."""
