"""A running system for the live views (`svckit top`, the gateway's
dashboard): the shop (shop_support.Shop: nats with JetStream, auth,
products, orders, payments, gateway) plus a second products instance, and
helpers to send traffic and to list the instances from NATS itself."""
import json

from shop_support import Shop, token
from test_gateway_support import wait_instances
from test_msg_support import Nats

SERVICES = ("auth", "gateway", "orders", "payments", "products")


class LiveSystem(Shop):
    def __init__(self, nats, env=None):
        super().__init__(nats, env=env)
        try:
            self.extra_products = self._start("products")
            wait_instances(self.gateway, "products", 2)
        except BaseException:
            self.close()
            raise

    def close(self):
        extra = self.__dict__.get("extra_products")
        if extra:
            extra.stop()
        super().close()

    def traffic(self, n=5):
        """n catalog reads through the gateway (each answered 200)."""
        h = {"Authorization": "Bearer " + token("live-user")}
        for _ in range(n):
            st, _, body = self.gateway.request("GET", "/products?limit=1", headers=h)
            assert st == 200, body

    def instances(self):
        """{(service, id)} from the instances' own PING answers."""
        expected = len(SERVICES) + 1
        c = Nats(self.nats.port)
        try:
            docs = [json.loads(m.data) for m in c.request_all("$SRV.PING", until=lambda rs: len(rs) >= expected)]
        finally:
            c.close()
        return {(d["name"], d["id"]) for d in docs}
