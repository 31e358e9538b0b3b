"""One worker process per benchmark variant (PyTorch bundles its own OpenMP runtime: two in one
process fight over the cores). The parent sends "step" (answered with the seconds one step
took) or another command name found in ``commands`` (answered with its function's result);
anything else ends the worker's loop. A worker that dies or stops answering within the timeout
is reported by name and dropped; the run goes on with the others."""
import time


class WorkerLost(RuntimeError):
    """A worker died or did not answer in time."""


def serve(conn, step, commands=None):
    """The worker's side: answer the parent's commands until told to stop."""
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


def receive(conn, proc, timeout):
    """The next answer from a worker, or WorkerLost when it dies or is silent for timeout s."""
    deadline = time.monotonic() + timeout
    while not conn.poll(0.2):
        if not proc.is_alive():
            code = proc.exitcode
            raise WorkerLost(f"worker died (exit code {code})")
        if time.monotonic() > deadline:
            proc.kill()
            raise WorkerLost(f"worker gave no answer in {timeout:g} s and was stopped")
    try:
        return conn.recv()
    except EOFError:
        proc.join(timeout=5)
        raise WorkerLost(f"worker died (exit code {proc.exitcode})" if proc.exitcode is not None
                         else "worker closed its pipe") from None


class Workers:
    """The live workers of a run: ``ask(variant, command)`` answers or drops the variant with a
    note in ``notes`` (None is returned then)."""

    def __init__(self, target, variants, *args, timeout=600.0):
        import multiprocessing as mp
        ctx = mp.get_context("spawn")
        self.conns, self.procs, self.notes, self.timeout = {}, {}, {}, timeout
        for v in variants:             # one at a time: a warm-up never overlaps another worker's
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=target, args=(child, v, *args), daemon=True)
            proc.start()
            try:
                status, why = receive(parent, proc, timeout)
            except WorkerLost as exc:
                status, why = "error", str(exc)
            if status == "ready":
                self.conns[v], self.procs[v] = parent, proc
            else:
                self.notes[v] = why
                proc.join(timeout=5)

    @property
    def variants(self):
        return list(self.conns)

    def ask(self, variant, command):
        conn, proc = self.conns[variant], self.procs[variant]
        try:
            conn.send(command)
            return receive(conn, proc, self.timeout)
        except (WorkerLost, BrokenPipeError, OSError) as exc:
            self.notes[variant] = f"lost during {command!r}: {exc}"
            del self.conns[variant], self.procs[variant]
            return None

    def close(self):
        for v in list(self.conns):
            try:
                self.conns[v].send("quit")
            except OSError:
                pass
        for proc in self.procs.values():
            proc.join(timeout=60)
            if proc.is_alive():
                proc.kill()
        self.conns, self.procs = {}, {}


def ready_or_error(conn, build):
    """The worker's start: build() -> step function; tells the parent "ready" or why not.
    -> the step, or None when it failed (the worker should return)."""
    try:
        step = build()
        step()  # warm-up (and compilation)
    except Exception as exc:  # a variant may not run on a machine (torch.compile, no bf16)
        conn.send(("error", f"{type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"))
        return None
    conn.send(("ready", None))
    return step
