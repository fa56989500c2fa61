"""Start an IPython kernel with the himalia magics loaded (the kernelspec's argv)."""

from ipykernel.kernelapp import IPKernelApp

from . import EXTENSIONS


def main() -> None:
    IPKernelApp.launch_instance(extensions=EXTENSIONS)


if __name__ == "__main__":
    main()
