"""``looplm generate --run RUNDIR --prompt TEXT [--n 200] [--temperature T] [--top-k K] [--top-p P] [--seed S]``.

Prints the continuation only (``--show-prompt`` prints the prompt before it).
"""

from __future__ import annotations

from looplm.cli.args import MAX_COUNT, SEED, count, real
from looplm.cli.common import add_precision_flag, path_arg
from looplm.data.tokenize import load_tokenizer
from looplm.device import DEVICES, resolve_device
from looplm.generate import generate
from looplm.precision import precision_for_run
from looplm.rundir import load_run


def add_parser(sub) -> None:
    p = sub.add_parser("generate", help="continue a prompt with a trained model")
    p.add_argument("--run", dest="rundir", type=path_arg, metavar="RUNDIR", required=True, help="run directory written by looplm train")
    p.add_argument("--prompt", required=True, help="the text to continue (its tokens must be in the run's vocab)")
    p.add_argument("--n", type=count(MAX_COUNT), default=200, help="tokens to generate (default: 200)")
    p.add_argument("--temperature", type=real(1e-3, 1e3, zero_ok=True), default=1.0,
                   help="divides the logits: below 1 is safer, above 1 wilder, 0 always the likeliest (default: 1)")
    p.add_argument("--top-k", type=count(1 << 31), default=None, help="draw only from the k likeliest tokens")
    p.add_argument("--top-p", type=real(above=0, max=1), default=None,
                   help="draw only from the likeliest tokens that together hold probability p")
    p.add_argument("--seed", type=SEED, default=None, help="repeat a draw (default: a new one each time)")
    p.add_argument("--show-prompt", action="store_true", help="print the prompt before the continuation")
    p.add_argument("--device", choices=DEVICES, default="auto", help="where to run the model (default: auto)")
    add_precision_flag(p, default=None)
    p.set_defaults(handle=handle)


def handle(args) -> int:
    device = resolve_device(args.device)
    loaded = load_run(args.rundir, device=str(device))
    tok = load_tokenizer(args.rundir, loaded.vocab)
    model = precision_for_run(args.precision, loaded.config.train.precision, device, loaded.model).wrap(loaded.model)
    text = generate(model, tok, args.prompt, args.n, args.temperature, args.top_k, args.top_p, args.seed)
    print(f"{args.prompt}{tok.joiner}{text}" if args.show_prompt else text)
    return 0
