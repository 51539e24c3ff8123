"""Samples: the dataset spec table, native-format readers, the built-in demo set, image I/O; the samples stage."""
