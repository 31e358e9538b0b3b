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


def build_parser():
    p = argparse.ArgumentParser(prog="pacofr", description="PaCo-FR facial representation "
                                "pre-training and evaluation on CPUs.")
    sub = p.add_subparsers(dest="command", required=True)
    info = sub.add_parser("info", help="print build facts: oneDNN version and ISA, back ends, threads")
    info.add_argument("--threads", type=int, help="set the thread count first")
    info.set_defaults(func=cmd_info)
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
