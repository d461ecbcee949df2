# expect: via HTTP: 3
# expect: via a method: 3
import asyncio
import urllib.request

import ray
from aiohttp import web

ray.init()


@ray.remote
class Counter:
    async def __init__(self):
        self.count = 0
        app = web.Application()
        app.add_routes([web.get("/", self.get)])
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = self.runner.addresses[0][1]

    async def get(self, request):
        return web.Response(text=str(self.count))

    async def increment(self):
        self.count += 1

    async def get_port(self):
        return self.port

    async def value(self):
        await asyncio.sleep(0)
        return self.count


counter = Counter.remote()
ray.get([counter.increment.remote() for _ in range(3)])
port = ray.get(counter.get_port.remote())
with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30) as reply:
    print("via HTTP:", reply.read().decode())
print("via a method:", ray.get(counter.value.remote()))
ray.shutdown()
