"""Drives two real murmur agents with the py-consul client library (Consul's Python client).

Usage: python3 tests/clients/py_consul.py path/to/murmur
Exit code 0 when every call behaves as it does against Consul.
"""
import base64
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import consul


def wait(cond, limit=15.0):
    end = time.time() + limit
    while time.time() < end:
        try:
            if cond():
                return True
        except Exception:
            pass
        time.sleep(0.1)
    return False


def main():
    binary = sys.argv[1]
    tmp = tempfile.mkdtemp(prefix="murmur-pyconsul-")
    procs = []
    try:
        for name, ip, extra in [("py-one", "127.0.17.1", ["-server", "-bootstrap-expect=1"]),
                                ("py-two", "127.0.17.2", [])]:
            procs.append(subprocess.Popen(
                [binary, "agent", f"-node={name}", f"-bind={ip}", f"-client={ip}",
                 f"-data-dir={os.path.join(tmp, name)}"] + extra,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        one = consul.Consul(host="127.0.17.1", port=8500)
        two = consul.Consul(host="127.0.17.2", port=8500)
        assert wait(lambda: one.agent.self()["Config"]["NodeName"] == "py-one")
        assert wait(lambda: two.agent.self()["Config"]["NodeName"] == "py-two")

        assert two.agent.join("127.0.17.1") is True
        assert wait(lambda: len(one.agent.members()) == 2)
        members = {m["Name"]: m for m in two.agent.members()}
        assert members["py-one"]["Tags"]["role"] == "consul", members
        assert members["py-two"]["Tags"]["role"] == "node", members
        assert members["py-one"]["Status"] == 1

        index, nodes = one.catalog.nodes()
        assert int(index) >= 1, index
        assert sorted(n["Node"] for n in nodes) == ["py-one", "py-two"], nodes
        assert {n["Node"]: n["Address"] for n in nodes}["py-two"] == "127.0.17.2"

        index, node = one.catalog.node("py-one")
        assert node["Node"]["Datacenter"] == "dc1", node
        assert node["Services"]["consul"]["Port"] == 8300, node
        _, missing = one.catalog.node("nobody")
        assert missing is None

        assert one.status.leader() == "127.0.17.1:8300"
        assert one.status.peers() == ["127.0.17.1:8300"]

        # The agent's own services and TTL checks, as a py-consul user registers them.
        assert one.agent.service.register(
            "web", service_id="web-1", port=80, tags=["v1"], check=consul.Check.ttl("30s")) is True
        services = one.agent.services()
        assert services["web-1"]["Service"] == "web" and services["web-1"]["Port"] == 80, services
        assert one.agent.checks()["service:web-1"]["Status"] == "critical"
        assert one.agent.check.ttl_pass("service:web-1", notes="serving") is True
        check = one.agent.checks()["service:web-1"]
        assert (check["Status"], check["Output"]) == ("passing", "serving"), check

        # The catalog every agent holds: py-two, which registered nothing, answers for py-one's service.
        assert wait(lambda: [s["ServiceID"] for s in two.catalog.service("web")[1]] == ["web-1"])
        assert wait(lambda: [e["Node"]["Node"] for e in two.health.service("web", passing=True)[1]]
                    == ["py-one"])
        _, entries = two.health.service("web", passing=True)
        assert [c["CheckID"] for c in entries[0]["Checks"]] == ["serfHealth", "service:web-1"], entries
        assert entries[0]["Checks"][1]["Output"] == "serving", entries
        # A filter expression, as py-consul passes it (filter_expr -> ?filter=).
        _, web = two.catalog.service("web", filter_expr='ServiceID == "web-1"')
        assert [s["ServiceID"] for s in web] == ["web-1"], web
        _, none = two.catalog.service("web", filter_expr="ServicePort != 80")
        assert none == [], none
        _, named = two.catalog.nodes(filter_expr='Node matches "^py-"')
        assert sorted(n["Node"] for n in named) == ["py-one", "py-two"], named
        # A blocking catalog.services returns once a new service appears anywhere in the cluster.
        index, services = two.catalog.services()
        assert services["web"] == ["v1"], services
        listed = {}

        def block_services():
            listed["reply"] = two.catalog.services(index=index, wait="20s")

        lister = threading.Thread(target=block_services)
        lister.start()
        lister.join(timeout=0.5)
        assert lister.is_alive(), "catalog.services returned before any change"
        assert one.agent.service.register("db", port=5432) is True
        lister.join(timeout=20)
        assert not lister.is_alive(), "catalog.services did not return after a new service"
        index2, services2 = listed["reply"]
        assert "db" in services2 and int(index2) > int(index), (index, index2, services2)
        assert one.agent.service.deregister("db") is True
        assert one.agent.service.deregister("web-1") is True
        assert "web-1" not in one.agent.services()

        # The servers' KV store: written through the client agent, read on the server, and back.
        assert two.kv.put("app/config", "v1", flags=7) is True
        _, entry = one.kv.get("app/config")
        assert (entry["Value"], entry["Flags"]) == (b"v1", 7), entry
        assert two.kv.put("app/config", "v2", cas=entry["ModifyIndex"]) is True
        assert two.kv.put("app/config", "v3", cas=entry["ModifyIndex"]) is False, "stale CAS"
        assert one.kv.put("app/db/host", "db1") is True
        assert one.kv.get("app/", keys=True, separator="/")[1] == ["app/config", "app/db/"]
        assert [e["Key"] for e in two.kv.get("app", recurse=True)[1]] == ["app/config", "app/db/host"]
        assert one.kv.get("app/none")[1] is None
        # A blocking get returns when its key changes, not when another one does.
        kv_index, _ = two.kv.get("app/config")
        got = {}

        def block_kv():
            got["reply"] = two.kv.get("app/config", index=kv_index, wait="20s")

        kv_waiter = threading.Thread(target=block_kv)
        kv_waiter.start()
        assert one.kv.put("app/other", "x") is True
        kv_waiter.join(timeout=0.5)
        assert kv_waiter.is_alive(), "a write to another key woke the blocking get"
        assert one.kv.put("app/config", "v4") is True
        kv_waiter.join(timeout=20)
        assert not kv_waiter.is_alive(), "the blocking get did not return after its key changed"
        new_index, new_entry = got["reply"]
        assert new_entry["Value"] == b"v4" and int(new_index) > int(kv_index), got
        # Sessions and locks.
        sid = two.session.create(name="py", ttl=30)
        other = one.session.create(name="other")
        assert one.kv.put("locks/leader", "py-two", acquire=sid) is True
        assert one.kv.put("locks/leader", "py-one", acquire=other) is False, "a held lock was taken"
        assert one.kv.get("locks/leader")[1]["Session"] == sid
        _, info = one.session.info(sid)
        assert (info["Name"], info["TTL"], info["Node"]) == ("py", "30s", "py-two"), info
        assert two.session.renew(sid)["ID"] == sid
        assert two.kv.put("locks/leader", "", release=sid) is True
        assert "Session" not in one.kv.get("locks/leader")[1]
        assert one.session.destroy(sid) is True and one.session.destroy(other) is True
        assert one.session.list()[1] == []
        # Transactions: applied together, or refused with every failure and nothing applied.
        b64 = lambda b: base64.b64encode(b).decode()
        r = one.txn.put([
            {"KV": {"Verb": "set", "Key": "app/t1", "Value": b64(b"x")}},
            {"KV": {"Verb": "get", "Key": "app/t1"}},
        ])
        assert r["Errors"] is None and base64.b64decode(r["Results"][1]["KV"]["Value"]) == b"x", r
        try:
            two.txn.put([
                {"KV": {"Verb": "set", "Key": "app/t2", "Value": b64(b"y")}},
                {"KV": {"Verb": "cas", "Key": "app/t1", "Index": 1, "Value": b64(b"z")}},
            ])
            raise AssertionError("a transaction with a stale CAS was applied")
        except consul.exceptions.ClientError as e:
            assert "409" in str(e) and "index is stale" in str(e), e
        assert one.kv.get("app/t2")[1] is None, "half a transaction was applied"

        # Network coordinates: each agent reports its own to the servers; every agent reads them.
        assert wait(lambda: sorted(c["Node"] for c in two.coordinate.nodes()[1])
                    == ["py-one", "py-two"], limit=30)
        index, mine = two.coordinate.node("py-two")
        assert int(index) >= 1 and len(mine[0]["Coord"]["Vec"]) == 8, mine
        planted = dict(mine[0]["Coord"], Vec=[0.125] + [0.0] * 7)
        assert two.coordinate.update("py-two", planted) is True
        assert one.coordinate.node("py-two")[1][0]["Coord"]["Vec"][0] == 0.125
        assert one.coordinate.datacenters()[0]["Datacenter"] == "dc1"

        # Datacenters: the client asks its server; naming this one is as naming none; another that
        # no server knows gets Consul's error.
        assert two.catalog.datacenters() == ["dc1"], two.catalog.datacenters()
        assert two.kv.get("app/t1", dc="dc1")[1]["Value"] == b"x"
        try:
            two.kv.get("app/t1", dc="nowhere")
            refused = None
        except Exception as e:  # py-consul's 500: ConsulException, wherever this version keeps it
            refused = str(e)
        assert refused is not None and "No path to datacenter" in refused, refused

        # External services at the servers' catalog, written through the client: every agent answers.
        assert two.catalog.register(
            "ext-db", "10.17.0.9", service={"Service": "pg", "ID": "pg1", "Port": 5432},
            check={"Name": "pg up", "ServiceID": "pg1", "Status": "passing"}) is True
        _, instances = two.catalog.service("pg")
        assert [(s["Node"], s["Address"], s["ServicePort"]) for s in instances] == \
            [("ext-db", "10.17.0.9", 5432)], instances
        assert wait(lambda: [e["Node"]["Node"] for e in one.health.service("pg", passing=True)[1]]
                    == ["ext-db"])
        assert two.catalog.deregister("ext-db", service_id="pg1") is True
        assert two.catalog.service("pg")[1] == []
        assert "ext-db" in [n["Node"] for n in two.catalog.nodes()[1]]
        assert two.catalog.deregister("ext-db") is True
        assert wait(lambda: "ext-db" not in [n["Node"] for n in one.catalog.nodes()[1]])

        assert one.kv.delete("app", recurse=True) is True
        assert one.kv.get("app", recurse=True)[1] is None

        try:
            two.agent.force_leave("nobody-here")
            raise AssertionError("force-leave of an unknown node must fail")
        except consul.ConsulException as e:
            assert "500" in str(e), e

        # Blocking query: held while nothing changes, returns with a newer index once py-two leaves.
        index, _ = one.catalog.nodes()
        result = {}

        def block():
            result["reply"] = one.catalog.nodes(index=index, wait="30s")
            result["at"] = time.time()

        waiter = threading.Thread(target=block)
        waiter.start()
        waiter.join(timeout=1.0)
        assert waiter.is_alive(), "the blocking query returned before any change"
        left_at = time.time()
        assert two.agent.leave() is True
        waiter.join(timeout=30)
        assert not waiter.is_alive(), "the blocking query did not return after the change"
        index2, _ = result["reply"]
        assert int(index2) > int(index), (index, index2)
        assert result["at"] >= left_at
        assert wait(lambda: {m["Name"]: m["Status"] for m in one.agent.members()}["py-two"] == 3)
        print("py-consul: all calls behaved as against Consul")
    finally:
        for p in procs:
            p.kill()
            p.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
