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
