"""The himalia kernel: IPython with the platform's magics loaded."""

EXTENSIONS = ["himalia.magics"]
