"""Command-line front of cxr-transfer: thin click commands that build a configuration and call one library function."""
