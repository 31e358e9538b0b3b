"""The command loop of a benchmark worker process: the parent sends "step" (answered with the
seconds one step took) or another command name found in ``commands`` (answered with its
function's result), and anything else ends the loop."""
import time


def serve(conn, step, commands=None):
    commands = commands or {}
    while True:
        cmd = conn.recv()
        if cmd == "step":
            t = time.perf_counter()
            step()
            conn.send(time.perf_counter() - t)
        elif cmd in commands:
            conn.send(commands[cmd]())
        else:
            return


def start_workers(target, variants, *args):
    """One spawned process per variant running target(conn, variant, *args), started one at a
    time (a warm-up never overlaps another worker's). -> ({variant: conn} of those that said
    "ready", {variant: why} of those that could not run, [processes])."""
    import multiprocessing as mp
    ctx = mp.get_context("spawn")
    conns, notes, procs = {}, {}, []
    for v in variants:
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=target, args=(child, v, *args), daemon=True)
        proc.start()
        procs.append(proc)
        status, why = parent.recv()
        if status == "ready":
            conns[v] = parent
        else:
            notes[v] = why
    return conns, notes, procs
