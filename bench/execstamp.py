"""Write ``time.monotonic_ns()`` to a file, then execv the client in this same process.

``python -I -S execstamp.py STAMPFILE /abs/path/client ARGS...``: the stamp is taken
immediately before execve(2), after the lab's namespace and mount set-up, so that
"exec -> address" measures the client alone.  The PID stays the same across the exec.
"""

import os
import sys
import time

fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
os.write(fd, str(time.monotonic_ns()).encode())
os.close(fd)
os.execv(sys.argv[2], sys.argv[2:])
