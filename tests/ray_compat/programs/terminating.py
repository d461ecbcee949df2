# expect: exit_actor: RayActorError
# expect: shutdown hook ran
import os
import tempfile
import time

import ray
from ray.actor import exit_actor

marker = os.path.join(tempfile.mkdtemp(), "hook")


@ray.remote
class Exiter:
    def exit(self):
        exit_actor()


@ray.remote
class Hooked:
    def __init__(self, path):
        self.path = path

    def ping(self):
        return "pong"

    def __ray_shutdown__(self):
        with open(self.path, "w") as f:
            f.write("ran")


e = Exiter.remote()
try:
    ray.get(e.exit.remote())
    ray.get(e.exit.remote())
except ray.exceptions.RayActorError:
    print("exit_actor: RayActorError")

h = Hooked.remote(marker)
ray.get(h.ping.remote())
ray.get(h.__ray_terminate__.remote())
deadline = time.monotonic() + 20
while not os.path.exists(marker) and time.monotonic() < deadline:
    time.sleep(0.05)
print("shutdown hook ran" if os.path.exists(marker) else "no hook")
