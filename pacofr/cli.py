"""The ``pacofr`` command line (argparse sub-commands)."""
import argparse
import json
import sys


def cmd_info(args):
    import pacofr
    if args.threads:
        pacofr.set_num_threads(args.threads)
    print(json.dumps(pacofr.build_info(), indent=2))
    return 0


def cmd_synthface(args):
    from .data import SynthFace
    from .data.synth.preview import save_grid
    if args.threads:
        import pacofr
        pacofr.set_num_threads(args.threads)
    ds = SynthFace(seed=args.seed, size=args.size, num_images=max(10000, args.start + args.num))
    save_grid(ds.render_batch(range(args.start, args.start + args.num)), args.out, columns=args.columns)
    print(args.out)
    return 0


def build_parser():
    p = argparse.ArgumentParser(prog="pacofr", description="PaCo-FR facial representation "
                                "pre-training and evaluation on CPUs.")
    sub = p.add_subparsers(dest="command", required=True)
    info = sub.add_parser("info", help="print build facts: oneDNN version and ISA, back ends, threads")
    info.add_argument("--threads", type=int, help="set the thread count first")
    info.set_defaults(func=cmd_info)
    sf = sub.add_parser("synthface", help="render SynthFace faces with their landmarks and parsing maps to a PNG")
    sf.add_argument("--num", type=int, default=16, help="how many faces (default 16)")
    sf.add_argument("--start", type=int, default=0, help="first image index")
    sf.add_argument("--seed", type=int, default=0)
    sf.add_argument("--size", type=int, default=112)
    sf.add_argument("--columns", type=int, default=8)
    sf.add_argument("--threads", type=int)
    sf.add_argument("--out", default="synthface.png")
    sf.set_defaults(func=cmd_synthface)
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
