"""The ``fomm weights`` subcommand: list the official checkpoints, download them."""

from __future__ import annotations

from fomm.checkpoints.hub import ORIGINAL_LINKS, WEIGHTS, cache_dir, download, table


def cmd_weights(args) -> None:
    """``fomm weights list`` / ``fomm weights download NAME``."""
    if args.weights_command == "list":
        rows = [("NAME", "ORIGIN", "FILE", "LICENCE", "ANIMATES"), *table()]
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        for row in rows:
            print("  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[4])
        print(f"\ncache: {cache_dir()}\nPaddleGAN's: fomm weights download NAME, then -c NAME. "
              f"The original's .pth.tar (no direct link): {ORIGINAL_LINKS}; then -c PATH.")
        return
    path = download(args.name, url=args.url, progress=not args.quiet, force=args.force)
    print(f"{path}\nuse it with: fomm animate PHOTO VIDEO -c {args.name}")


def register(sub) -> None:
    """Add ``fomm weights`` (list, download) to the command line."""
    p = sub.add_parser("weights", help="official checkpoints: list them, download PaddleGAN's",
                       description="List the official checkpoints and download those with a "
                                   "direct link into the per-user cache; -c NAME then finds them.")
    cmds = p.add_subparsers(dest="weights_command", metavar="list|download", required=True)
    cmds.add_parser("list", help="names, origin, cached size, licence, what each animates")
    d = cmds.add_parser("download", help="download NAME into the cache (resumable, verified)")
    d.add_argument("name", metavar="NAME", choices=[w.name for w in WEIGHTS.values() if w.url])
    d.add_argument("--url", help="another address for the same file (a mirror)")
    d.add_argument("--force", action="store_true", help="download again even if cached")
    d.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_weights)
