# expect: restarted counter: 1
# expect: retried: done
import os
import sys
import tempfile

import ray

marker = os.path.join(tempfile.mkdtemp(), "crashed")


@ray.remote(max_restarts=4, max_task_retries=-1)
class Actor:
    def __init__(self):
        self.counter = 0

    def increment_and_possibly_fail(self):
        if not os.path.exists(marker):
            open(marker, "w").close()
            os._exit(0)
        self.counter += 1
        return self.counter


@ray.remote(max_restarts=1)
class Leaver:
    def leave(self):
        sys.exit(1)

    def work(self):
        return "done"


actor = Actor.remote()
print("restarted counter:", ray.get(actor.increment_and_possibly_fail.remote()))
leaver = Leaver.remote()
try:
    ray.get(leaver.leave.remote())
except ray.exceptions.RayActorError:
    pass
print("retried:", ray.get(leaver.work.remote()))
