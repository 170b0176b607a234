"""Untrusted specs through the command line: YAML budgets, keys, encodings, messages, outputs, start-up."""
