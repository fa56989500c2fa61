"""``%label``: label data from a notebook, alone or with colleagues.

``%label NAME --classes a,b,c [--k 2] [--data VAR --text COL]`` opens the labeling widget for
your set ``NAME`` (made on first use, its items added from ``--data``); ``--model`` orders the
queue by a model's uncertainty. ``%label list``, ``%label status NAME`` (progress per person,
agreement, conflicts), ``%label export NAME --out labels.csv``. A set named like a command
opens with ``%label open NAME``.

The rules are the platform's, through :mod:`himalia.sdk.labels`; this module parses and shows.
"""

from __future__ import annotations

from IPython.core.error import UsageError
from IPython.core.magic import line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments
from IPython.display import display
from traitlets import Callable

from himalia.sdk import Client, HimaliaError

from .base import HimaliaMagics, render
from .jobs import api_message

COMMANDS = ("open", "list", "status", "export")


def _words(value: str | None) -> list[str]:
    return [w.strip() for w in (value or "").split(",") if w.strip()]


@magics_class
class LabelMagics(HimaliaMagics):
    """Labeling; configurable as ``c.LabelMagics``."""

    client_factory = Callable(
        Client.from_env,
        help="Callable returning a himalia.sdk.Client; default reads the kernel's environment.",
    ).tag(config=True)

    def _labels(self):
        from himalia.sdk.labels import Labels

        try:
            return Labels(self.client_factory())
        except HimaliaError as e:
            raise UsageError(f"%label: {e}") from None

    def _variable(self, name: str | None, what: str):
        if name is None:
            return None
        if name in self.shell.user_ns:
            return self.shell.user_ns[name]
        if what == "--model" and ":" in name:  # an MLflow model URI
            return name
        raise UsageError(f"%label: {what} {name}: no such variable in this notebook")

    @magic_arguments()
    @argument("words", nargs="+", help="NAME, or open NAME | list | status NAME | export NAME")
    @argument("--classes", help="the classes, comma-separated (creates the set when new)")
    @argument("--k", type=int, default=1, help="different people per item (default 1)")
    @argument("--task", choices=("single", "multi"), default="single", help="one class per item, or several")
    @argument("--instructions", default="", help="what labelers should know")
    @argument("--data", metavar="VAR", help="items to add when the set is new: a DataFrame or a list of texts")
    @argument("--text", metavar="COLUMN", help="--data: the column of texts")
    @argument("--image", metavar="COLUMN", help="--data: the column of image paths")
    @argument("--id", metavar="COLUMN", help="--data: the column of item ids (default: the index)")
    @argument("--share", metavar="USERS", help="people who label it too, comma-separated")
    @argument("--groups", metavar="GROUPS", help="hub groups who label it too, comma-separated")
    @argument("--model", metavar="VAR|URI", help="order by this model's uncertainty (active learning)")
    @argument("--strategy", choices=("least_confidence", "margin", "entropy"), default="least_confidence")
    @argument("--features", metavar="VAR", help="--model: its inputs per item id (default: the items)")
    @argument("--format", choices=("csv", "parquet", "jsonl"), help="export: the file format")
    @argument("--out", metavar="PATH", help="export: where to write")
    @line_magic
    def label(self, line: str = ""):
        """Label data: %label NAME --classes a,b [--k 2] [--data VAR --text COL]; list; status; export."""
        args = self.parse(self.label, line)
        if args is None:
            return None
        command, rest = args.words[0], args.words[1:]
        if command not in COMMANDS:
            command, rest = "open", args.words
        try:
            return getattr(self, f"_{command}")(args, rest)
        except HimaliaError as e:
            raise UsageError(f"%label {command}: {api_message(e)}") from None

    def _one(self, rest: list[str], command: str) -> str:
        if len(rest) != 1:
            raise UsageError(f"%label {command}: name one label set")
        return rest[0]

    def _open(self, args, rest):
        name = self._one(rest, "open")
        data = self._variable(args.data, "--data")
        model = self._variable(args.model, "--model")
        features = self._variable(args.features, "--features")
        if args.k < 1:
            raise UsageError("%label: --k is at least 1")
        labels = self._labels()
        ls, created = labels.ensure(name, _words(args.classes) or None, k=args.k, task=args.task,
                                    instructions=args.instructions, users=_words(args.share),
                                    groups=_words(args.groups))
        if not created and (args.share or args.groups):
            ls.share(_words(args.share) or ls.data["shared_users"],
                     _words(args.groups) or ls.data["shared_groups"])
        if data is not None:
            if ls.data["progress"]["items"]:
                print(f"'{name}' already has {ls.data['progress']['items']} items; --data adds only "
                      "to a new set (add more with himalia.sdk.labels.get(name).add(...)).")
            else:
                added = ls.add(data, text=args.text, image=args.image, id=args.id)
                print(f"Added {added} items to '{name}'.")
        return ls.widget(model=model, data=features, strategy=args.strategy)

    def _list(self, args, rest):
        sets = self._labels().list()
        if not sets:
            print("No label sets yet: %label NAME --classes a,b --data VAR makes one.")
            return None
        rows = [[s.id, s.name, s.data["owner"], s.data["task"], s.data["k"],
                 f"{s.data['progress']['done']}/{s.data['progress']['items']}",
                 s.data["progress"]["mine"]] for s in sets]
        display(render("Label sets", ["id", "name", "owner", "task", "k", "done", "yours"], rows), raw=True)
        return None

    def _status(self, args, rest):
        name = self._one(rest, "status")
        ls = self._labels().get(name)
        p = ls.progress
        rows = [[user, count] for user, count in sorted(p["annotators"].items())]
        display(render(f"{ls.name}: {p['done']}/{p['items']} items done, {p['labels']} labels",
                       ["annotator", "labels"], rows), raw=True)
        if ls.data["owner"] == ls.client.whoami()["name"] or "admin" in ls.client.whoami()["roles"]:
            a = ls.agreement()
            if a["method"]:
                kappa = "n/a" if a["kappa"] is None else f"{a['kappa']:.3f}"
                per_class = [[c, "n/a" if k is None else f"{k:.3f}"] for c, k in a["per_class"].items()]
                display(render(f"Agreement ({a['method']}'s kappa over {a['items']} items): {kappa}",
                               ["class", "kappa"], per_class), raw=True)
            conflicts = ls.conflicts()
            if conflicts:
                display(render(f"{len(conflicts)} conflict(s)", ["item", "votes", "decided"],
                               [[c["item_id"], ", ".join(f"{u}: {v}" for u, v in c["votes"].items()),
                                 c["adjudicated"] or ""] for c in conflicts[:50]]), raw=True)
        return None

    def _export(self, args, rest):
        name = self._one(rest, "export")
        ls = self._labels().get(name)
        out = args.out or f"{ls.name}.{args.format or 'csv'}"
        path = ls.export(out, args.format)
        print(f"Wrote {path} (snapshot of '{ls.name}').")
        return None
