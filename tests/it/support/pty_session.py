"""Runs a command on a pseudo-terminal, as a person at a terminal would, answering its prompts.

Usage: pty_session.py ANSWERS_JSON CMD [ARG ...]
ANSWERS_JSON is a list of [prompt text, reply]: when the output so far shows the next prompt text (after the
previous one), the reply and a newline are typed. Prints everything the terminal showed, without \\r.
"""
import json
import os
import pty
import select
import subprocess
import sys
import time

answers = json.loads(sys.argv[1])
primary, secondary = pty.openpty()
child = subprocess.Popen(sys.argv[2:], stdin=secondary, stdout=secondary, stderr=secondary, close_fds=True)
os.close(secondary)
shown = b""
answered_up_to = 0
deadline = time.monotonic() + 120
while time.monotonic() < deadline:
    ready, _, _ = select.select([primary], [], [], 0.2)
    if ready:
        try:
            chunk = os.read(primary, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        shown += chunk
    if answers and answers[0][0].encode() in shown[answered_up_to:]:
        prompt, reply = answers.pop(0)
        answered_up_to = shown.index(prompt.encode(), answered_up_to) + len(prompt)
        os.write(primary, reply.encode() + b"\n")
    if not ready and child.poll() is not None:
        break
try:
    # The terminal closes as the child exits: give it the time left to finish exiting before calling it hung.
    child.wait(timeout=max(1.0, deadline - time.monotonic()))
except subprocess.TimeoutExpired:
    child.kill()
    shown += b"\n[killed: still running after 120 s]\n"
child.wait()
sys.stdout.write(shown.decode("utf-8", "replace").replace("\r", ""))
if answers:
    sys.stdout.write(f"\n[prompts never shown: {answers}]\n")
sys.exit(child.returncode)
