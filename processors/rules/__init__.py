"""Detection rule sets shipped as data (default.yaml); a package so that they are installed."""
