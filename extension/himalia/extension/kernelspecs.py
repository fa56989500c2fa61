"""Kernel specs with the himalia kernel as the Python kernel of every himalia server."""

from __future__ import annotations

from jupyter_client.kernelspec import KernelSpecManager
from traitlets import List, Unicode


class HimaliaKernelSpecManager(KernelSpecManager):
    """The plain Python kernel is replaced by the himalia kernel (IPython with the platform's
    magics): it disappears from the Launcher, and a notebook that asks for it gets the himalia
    kernel, so magics work in every notebook. Other kernels (a user's own included) stay.

    Enabled by ``c.ServerApp.kernel_spec_manager_class``, which himalia's server config sets.
    """

    himalia_kernel = Unicode(
        "himalia", help="Name of the kernel spec that stands in for the plain Python ones."
    ).tag(config=True)

    replaced_kernels = List(
        Unicode(),
        default_value=["python3"],
        help="Kernel spec names served by the himalia kernel and hidden from the Launcher.",
    ).tag(config=True)

    def _has_himalia(self) -> bool:
        return self.himalia_kernel in super().find_kernel_specs()

    def find_kernel_specs(self) -> dict[str, str]:
        specs = super().find_kernel_specs()
        if self.himalia_kernel in specs:
            for name in self.replaced_kernels:
                specs.pop(name, None)
        return specs

    def get_kernel_spec(self, kernel_name: str):
        if kernel_name in self.replaced_kernels and self._has_himalia():
            kernel_name = self.himalia_kernel
        return super().get_kernel_spec(kernel_name)
