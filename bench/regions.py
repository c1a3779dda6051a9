"""Three regions under E2EE load lose one whole, get it back, and fail back.

Brings up ``us-east``, ``eu-west`` and ``ap-south`` as failure domains
(``scripts/regions up``: each its own Kafka, Redis, bucket store, API server and
Cassandra datacenter) and runs in each its operator (``Automatic`` failover, a
``--window`` detection window, peers read through their own API servers) and its
platform processes (see ``_regions``). SDK clients (X3DH, Double Ratchet, sender keys),
homed in all three regions by their user ids, talk 1:1 across regions and in groups
spanning them; each knows every region's gateway and follows its account's region.

Then, while the load runs: ``--before`` seconds in, ``--kill`` is killed whole
(``scripts/regions kill``: every process of the region at once); the load runs on
``--after`` seconds; then the region comes back with its data, rejoins fenced (its map
routes its shards to their takers), and ``kubectl tidings failback`` returns them; a
last ``--after-failback`` seconds of load runs against the region at home again.

Prints: time from the kill to the survivors' maps routing the dead region's shards
(takeover), to the first message delivered to one of its users and to every one of its
users served; messages accepted before the kill, during the loss and after failback;
sends refused while the dead region's shards were moving (503: never accepted, so never
lost); **lost** (accepted, never delivered); duplicates shown to a user; redeliveries the
clients' dedupe absorbed; and **delayed** copies (arrived only after the region came
back: accepted by it and still in its Kafka). Exit 1 when anything was lost or shown
twice; times are reported, never judged.

    .venv/bin/python bench/regions.py                            # 30 s window
    .venv/bin/python bench/regions.py --window 10 --clients 9 --rate 3 --json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import _regions
import httpx
from _servers import ServerError, drop_keyspace

from tidings.client.loadreport import Tally, percentile
from tidings.client.loadrun import LoadConfig, LoadRun, Planned, plan
from tidings.client.loadsim import SdkDevice


class Tracking(Tally):
    """The load tally, plus when each message was accepted and each copy arrived."""

    def __init__(self) -> None:
        super().__init__()
        self.accepted_at: dict[str, float] = {}
        self.arrived_at: dict[tuple[str, int], float] = {}

    def accept(self, message_id: str, after: float) -> None:
        super().accept(message_id, after)
        self.accepted_at.setdefault(message_id, time.time())

    def received_text(self, device: int, text: str, at: float) -> str | None:
        message_id = super().received_text(device, text, at)
        if message_id is not None:
            self.arrived_at[message_id, device] = at
        return message_id


class Scenario:
    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args = args
        self.work = work
        self.regions = _regions.Regions(
            work, window=args.window, keyspace=f"regions_{uuid.uuid4().hex[:8]}"
        )
        self.marks: dict[str, float] = {}
        self.homes: dict[int, str] = {}
        self.tally = Tracking()
        self.run: LoadRun | None = None

    def progress(self, text: str) -> None:
        if not self.args.quiet:
            print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)

    def mark(self, name: str) -> float:
        self.marks[name] = time.time()
        self.progress(name.replace("_", " "))
        return self.marks[name]

    # -- set-up -----------------------------------------------------------------------
    async def bring_up(self) -> None:
        await self.regions.bring_up(self.progress)
        self.mark("regions_serving")

    def config(self, seed: int, duration: float) -> LoadConfig:
        urls = [r.gateway_url for r in self.regions.all]
        # Device i starts at region i's gateway and knows the others (as a client given
        # every region's address does); it then follows its account's region.
        servers = tuple(",".join(urls[i:] + urls[:i]) for i in range(len(urls)))
        args = self.args
        return LoadConfig(
            servers=servers,
            clients=args.clients,
            rate=args.rate,
            duration=duration,
            groups=args.groups,
            group_size=args.group_size,
            group_share=args.group_share,
            e2ee=True,
            outbox=self.regions.data / "otp-outbox.jsonl",
            drain_timeout=args.drain,
            seed=seed,
        )

    def homed(self) -> dict[str, int]:
        """Region -> clients homed there."""
        return {
            r.name: sum(1 for h in self.homes.values() if h == r.name) for r in self.regions.all
        }

    def schedule(self, prefix: str, duration: float) -> list[Planned]:
        """A later stretch of load, its message ids under ``prefix``: the same seed, so the
        same groups, and pairs whose sessions the warm-up opened."""
        _, planned = plan(self.config(self.args.seed, duration))
        return [replace(p, message_id=f"{prefix}{p.message_id[1:]}") for p in planned]

    def owners(self, name: str, seen_by: str) -> list[str]:
        """Owners of region ``name``'s shards in the map region ``seen_by`` follows."""
        routes = self.regions.routes(seen_by)
        return [owner for shard, owner in routes.items() if shard.startswith(f"{name}-")]

    async def set_up_clients(self) -> list[Planned]:
        config = self.config(self.args.seed, self.args.before + self.args.after)
        self.run = LoadRun(config, self.work / "devices", tally=self.tally)
        groups, schedule = plan(config)
        self.progress(f"{config.clients} SDK clients: register, connect, open sessions")
        await self.run.setup(groups)
        # A client may have followed a map to a peer's gateway as a region reaches it.
        by_url = {r.gateway_url: r.name for r in self.regions.all}
        by_url |= {f"http://{link.address}": to for (_, to, _), link in self.regions.links.items()}
        for device in self.run.devices:
            assert isinstance(device, SdkDevice)
            self.homes[device.index] = by_url.get(device.client.api.base_url, "?")
        await self.run.warm_up(groups, schedule)
        self.progress(f"clients homed: {self.homed()}")
        return schedule

    # -- the loss -----------------------------------------------------------------------
    async def takeover(self, victim: str) -> None:
        """Kill ``victim`` ``--before`` seconds into the load; mark when every survivor's
        map routes its shards elsewhere."""
        await asyncio.sleep(self.args.before)
        self.mark("killed")
        out = await asyncio.to_thread(self.regions.kill, victim)
        self.progress(out.strip().splitlines()[-1] if out.strip() else f"killed {victim}")
        survivors = [r.name for r in self.regions.all if r.name != victim]
        while True:
            if all((found := self.owners(victim, s)) and victim not in found for s in survivors):
                self.mark("taken_over")
                return
            await asyncio.sleep(0.2)

    async def lose_region(self, schedule: list[Planned]) -> None:
        assert self.run is not None
        victim = self.args.kill
        watch = asyncio.create_task(self.takeover(victim))
        await self.run.load(schedule)
        self.mark("load_done")
        try:
            await asyncio.wait_for(watch, self.args.drain)
        except TimeoutError:
            self.progress(f"!! the survivors did not take {victim}'s shards over")
        ids = [p.message_id for p in schedule]
        await self.run.drain(ids, self.args.drain)
        self.marks["missing_in_outage"] = self.tally.missing(ids)

    async def bring_back(self, schedule: list[Planned]) -> dict[str, Any]:
        assert self.run is not None
        victim = self.args.kill
        self.mark("returning")
        await self.regions.revive(victim)
        self.mark("returned")
        fenced = victim not in self.owners(victim, victim)
        ids = [p.message_id for p in schedule]
        await self.run.drain(ids, self.args.drain)
        moved = await self.fail_back(victim)
        self.mark("failed_back")
        return {"fenced_on_return": fenced, "failback": moved}

    async def fail_back(self, name: str) -> list[str]:
        """``kubectl tidings failback NAME`` in its own cluster; returns once every
        region's map routes its shards home (or ``--drain`` passed)."""
        self.progress(f"kubectl tidings failback {name}")
        region = self.regions.region(name)
        done = await asyncio.to_thread(
            region.kubectl, "tidings", "-n", self.regions.namespace, "failback", name, plugins=True
        )
        if done.returncode != 0:
            raise ServerError(f"kubectl tidings failback {name}: {done.stderr.strip()}")
        await self.until(lambda: all(o == name for o in self.shards_of(name)), "maps route home")
        return done.stdout.strip().splitlines()

    def shards_of(self, name: str) -> list[str]:
        """Owners of region ``name``'s shards in every region's map (one entry each)."""
        return [owner for r in self.regions.all for owner in self.owners(name, r.name)]

    def agreed(self, name: str) -> bool:
        """Whether every region's map gives region ``name``'s shards the same owners."""
        views = [
            {s: o for s, o in self.regions.routes(r.name).items() if s.startswith(f"{name}-")}
            for r in self.regions.all
        ]
        return all(view == views[0] for view in views) and bool(views[0])

    async def until(self, check: Callable[[], bool], what: str) -> bool:
        deadline = time.monotonic() + self.args.drain
        while not check():
            if time.monotonic() > deadline:
                self.progress(f"!! not within {self.args.drain:.0f}s: {what}")
                return False
            await asyncio.sleep(0.2)
        return True

    # -- a partition --------------------------------------------------------------------
    async def leases_held(self) -> dict[str, float]:
        """Region -> shard leases its delivery process holds now (its /metrics)."""
        found = {}
        async with httpx.AsyncClient(timeout=2.0) as http:
            for name, servers in self.regions.servers.items():
                for server in servers:
                    if server.name == "delivery" and server.alive:
                        with contextlib.suppress(httpx.HTTPError, StopIteration):
                            text = (await http.get(f"{server.ops_url}/metrics")).text
                            found[name] = next(
                                float(line.split()[-1])
                                for line in text.splitlines()
                                if line.startswith("tidings_shard_leases_held ")
                            )
        return found

    async def partition(self) -> dict[str, Any]:
        """Cut ``--partition`` off from the others (its links both ways) for
        ``--partition-for`` seconds under load, sampling every region's leases held;
        mend; fail back whatever was taken over; count what was lost."""
        assert self.run is not None
        cut, length = self.args.partition, self.args.partition_for
        schedule = self.schedule("p", length + 6)
        load = asyncio.create_task(self.run.load(schedule))
        await asyncio.sleep(3)
        self.mark("partitioned")
        await self.regions.partition(cut, cut=True)
        samples, total = [], _regions.SHARDS_PER_REGION * len(self.regions.all)
        while time.time() - self.marks["partitioned"] < length:
            samples.append(await self.leases_held())
            await asyncio.sleep(1.0)
        taken = any(o != cut for o in self.shards_of(cut))
        await self.regions.partition(cut, cut=False)
        self.mark("mended")
        await load
        agreed = await self.until(lambda: self.agreed(cut), "every map agrees on the cut region")
        self.mark("agreed")
        moved = await self.fail_back(cut) if any(o != cut for o in self.shards_of(cut)) else []
        ids = [p.message_id for p in schedule]
        await self.run.drain(ids, self.args.drain)
        sums = [sum(s.values()) for s in samples]
        agreed_s = round(self.marks["agreed"] - self.marks["mended"], 1) if agreed else None
        return {
            "region": cut,
            "seconds": length,
            "taken_over_while_cut": taken,
            "samples": len(samples),
            "leases_held_max": max(sums, default=0),
            "shards": total,
            "double_held_samples": sum(1 for v in sums if v > total),
            "maps_agreed_s": agreed_s,
            "failback": moved,
            "accepted": sum(1 for m in ids if m in self.tally.accepted),
            "lost": self.tally.missing(ids),
        }

    async def after_failback(self) -> list[Planned]:
        assert self.run is not None
        schedule = self.schedule("b", self.args.after_failback)
        await self.run.load(schedule)
        await self.run.drain([p.message_id for p in schedule], self.args.drain)
        return schedule

    # -- figures ------------------------------------------------------------------------
    def figures(
        self, first: list[Planned], last: list[Planned], back: dict[str, Any]
    ) -> dict[str, Any]:
        assert self.run is not None
        t = self.marks
        tally = self.tally
        victim = self.args.kill
        ids = [p.message_id for p in first + last]
        accepted = [m for m in ids if m in tally.accepted]

        def when(m: str) -> float:
            return tally.accepted_at.get(m, 0.0)

        victims = {d for d, home in self.homes.items() if home == victim}
        after_kill = {
            (m, d): at
            for (m, d), at in tally.arrived_at.items()
            if d in victims and when(m) >= t["killed"] and not m.startswith("w")
        }
        firsts: dict[int, float] = {}
        for (_, d), at in after_kill.items():
            if at < t["returning"]:
                firsts[d] = min(firsts.get(d, at), at)
        delayed = sum(
            1
            for (m, _), at in tally.arrived_at.items()
            if m in tally.accepted and at >= t["returning"] and when(m) < t["killed"]
        )
        # A send answered with an error may still have been taken: a group's copies for
        # reachable regions, or a send whose answer was lost with the region.
        arrived_by: dict[str, list[int]] = {}
        for m, d in sorted(tally.arrived_at):
            arrived_by.setdefault(m, []).append(d)
        arrived_anyway = {
            m: arrived_by[m] for m in ids if m not in tally.accepted and m in arrived_by
        }
        refused = {k: v for k, v in tally.errors.items() if k.startswith("send_")}

        def since_kill(at: float | None) -> float | None:
            return None if at is None else round(at - t["killed"], 1)

        return {
            "config": {
                k: getattr(self.args, k)
                for k in (
                    "clients",
                    "rate",
                    "before",
                    "after",
                    "after_failback",
                    "window",
                    "kill",
                    "groups",
                )
            },
            "homes": self.homed(),
            "takeover_s": since_kill(t.get("taken_over")),
            "first_served_s": since_kill(min(firsts.values()) if firsts else None),
            "all_served_s": since_kill(max(firsts.values()) if firsts else None),
            "served_users": f"{len(firsts)}/{len(victims)}",
            "accepted": {
                "before_kill": sum(1 for m in accepted if when(m) < t["killed"]),
                "during_loss": sum(1 for m in accepted if t["killed"] <= when(m) < t["returning"]),
                "after_failback": sum(1 for m in accepted if when(m) >= t["failed_back"]),
            },
            "refused": refused,
            "lost": tally.missing(ids),
            "lost_copies": [
                {
                    "message": m,
                    "device": d,
                    "home": self.homes.get(d),
                    "accepted_s": since_kill(when(m)),
                }
                for m in accepted
                for d in sorted(tally.expected[m] - tally.received.get(m, set()))
            ],
            "missing_during_loss": t.get("missing_in_outage"),
            "delayed": delayed,
            "refused_yet_delivered": {
                m: {
                    "to": [self.homes.get(d) for d in got],
                    "of": len(tally.expected[m]),
                    "arrived_s": since_kill(min(tally.arrived_at[(m, d)] for d in got)),
                }
                for m, got in arrived_anyway.items()
            },
            "duplicates": tally.duplicates,
            "redeliveries": sum(d.redeliveries for d in self.run.devices),
            "latency_ms_p50_p99": [
                round(percentile(tally.latencies, q) * 1000, 1) if tally.latencies else None
                for q in (0.5, 0.99)
            ],
            "fenced_on_return": back["fenced_on_return"],
            "failback": back["failback"],
            "return_s": round(t["returned"] - t["returning"], 1),
            "failback_s": round(t["failed_back"] - t["returned"], 1),
            "rss_mib": self.regions.rss_mib(),
            "errors": dict(sorted(tally.errors.items())),
        }

    async def play(self) -> dict[str, Any]:
        await self.bring_up()
        first = await self.set_up_clients()
        await self.lose_region(first)
        back = await self.bring_back(first)
        last = await self.after_failback()
        result = self.figures(first, last, back)
        if self.args.partition:
            result["partition"] = await self.partition()
            result["duplicates"] = self.tally.duplicates  # the partition's shown too
        return result

    async def close(self) -> None:
        if self.run is not None:
            await self.run.close()
        await self.regions.stop()
        if self.regions.all:
            # Left behind, each run's tables would weigh on every later run's Cassandra.
            first = self.regions.all[0].env
            contact = (
                first["TIDINGS_CASSANDRA_CONTACT_POINTS"],
                int(first["TIDINGS_CASSANDRA_PORT"]),
            )
            with contextlib.suppress(Exception):
                await asyncio.to_thread(drop_keyspace, contact, self.regions.keyspace)
        if not self.args.keep_up:
            await asyncio.to_thread(_regions.regions_script, "down")


def report(result: dict[str, Any]) -> None:
    victim = result["config"]["kill"]
    print(f"regions: {result['homes']} clients homed; killed {victim} whole")
    print(
        f"  takeover {result['takeover_s']} s after the kill; first of its users served at "
        f"{result['first_served_s']} s, all ({result['served_users']}) at "
        f"{result['all_served_s']} s"
    )
    print(f"  accepted: {result['accepted']}; refused while moving: {result['refused']}")
    print(
        f"  lost {result['lost']}, duplicates {result['duplicates']}, redeliveries "
        f"{result['redeliveries']}, delayed {result['delayed']} (missing until it returned: "
        f"{result['missing_during_loss']})"
    )
    print(
        f"  back in {result['return_s']} s, fenced: {result['fenced_on_return']}; failback in "
        f"{result['failback_s']} s: {'; '.join(result['failback'])}"
    )
    print(
        f"  refused, yet delivered later: {len(result['refused_yet_delivered'])} (a 503 says "
        "'not confirmed': the send may still land when its region returns; a retry under the "
        "same id is shown once)"
    )
    print(f"  latency p50/p99 {result['latency_ms_p50_p99']} ms; RSS MiB {result['rss_mib']}")
    if cut := result.get("partition"):
        print(
            f"partition: {cut['region']} cut off {cut['seconds']:.0f} s (taken over meanwhile: "
            f"{cut['taken_over_while_cut']}); leases held at most {cut['leases_held_max']:.0f} "
            f"of {cut['shards']} shards in {cut['samples']} samples ({cut['double_held_samples']} "
            f"with a shard held twice); maps agreed {cut['maps_agreed_s']} s after mending; "
            f"accepted {cut['accepted']}, lost {cut['lost']}"
        )


async def serve(args: argparse.Namespace, work: Path) -> int:
    """``--serve``: the regions up with their operators and platform processes, kept
    running (and brought back after a kill) until interrupted."""
    regions = _regions.Regions(work, window=args.window, keyspace="regions_serve")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await regions.bring_up(lambda text: print(text, file=sys.stderr, flush=True))
        print(f"{'REGION':<10} {'GATEWAY':<26} KUBECONFIG")
        for region in regions.all:
            print(f"{region.name:<10} {region.gateway_url:<26} {region.kubeconfig}")
        print(
            f"namespace {regions.namespace}; logs in {work}; `scripts/regions kill REGION` "
            "takes a region whole, `scripts/regions up REGION` brings its servers back and "
            "its operator and processes follow; Ctrl-C stops them (the servers stay up)",
            flush=True,
        )
        await regions.supervise(stop)
    except ServerError as exc:
        print(f"regions: {exc}", file=sys.stderr)
        return 2
    finally:
        await regions.stop()
    return 0


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=12)
    parser.add_argument("--rate", type=float, default=4.0, help="messages per second in all")
    parser.add_argument("--before", type=float, default=20.0)
    parser.add_argument("--after", type=float, default=60.0)
    parser.add_argument("--after-failback", type=float, default=10.0)
    parser.add_argument("--window", type=int, default=30, help="detection window, seconds")
    parser.add_argument("--kill", default="ap-south", choices=_regions.REGIONS)
    parser.add_argument(
        "--partition",
        choices=_regions.REGIONS,
        help="after the failback, cut this region off from the others (both ways)",
    )
    parser.add_argument("--partition-for", type=float, default=45.0, help="seconds")
    parser.add_argument("--groups", type=int, default=2)
    parser.add_argument("--group-size", type=int, default=4)
    parser.add_argument("--group-share", type=float, default=0.3)
    parser.add_argument("--drain", type=float, default=90.0, help="bound on each wait, seconds")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep-up", action="store_true", help="leave the regions' servers up")
    parser.add_argument(
        "--work", type=Path, help="keep logs and stores here (default: a temporary folder)"
    )
    parser.add_argument(
        "--serve",
        action="store_true",
        help="no scenario: keep the regions serving (restarting a killed one's processes "
        "once its servers are back) until interrupted",
    )
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        if args.work is not None:
            args.work.mkdir(parents=True, exist_ok=True)
            work = args.work
        else:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tidings-regions-")))
        if args.serve:
            return await serve(args, work)
        scenario = Scenario(args, work)
        try:
            result = await scenario.play()
        except ServerError as exc:
            print(f"regions: {exc}", file=sys.stderr)
            return 2
        finally:
            await scenario.close()
    if args.json:
        print(json.dumps(result))
    else:
        report(result)
    lost = result["lost"] + result.get("partition", {}).get("lost", 0)
    return 1 if lost or result["duplicates"] else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
