"""The oracle bound: every signal on an emergency vehicle's route shows its approach green from
dispatch until the vehicle has crossed it.

Unsafe for cross traffic by design (it switches without yellow or red clearance, and holds for
as long as the vehicle needs): it is the bound controllers are judged against, not a controller
to deploy. Every link leaving the EV's approach edge is green (so the queue ahead of it flushes,
whatever those vehicles' turns), every other link of the signal red.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from controller.core.corridor import Corridor, approach_links
from controller.core.network import Network
from controller.core.progress import EvProgress
from controller.core.snapshot import SignalCommand, Snapshot


class OracleController:
    name = "oracle"

    def __init__(
        self,
        network: Network,
        corridors: Mapping[str, Corridor],
        dispatch_s: Mapping[str, float],
    ) -> None:
        self._network = network
        self._corridors = dict(corridors)
        self._dispatch_s = dict(dispatch_s)
        self._links: dict[tuple[str, int], frozenset[int]] = {
            (ev, j.index): approach_links(network, j) for ev, c in corridors.items() for j in c.junctions
        }
        self._shown: dict[str, str] = {}  # tls_id -> state we last set
        self.preempted: set[str] = set()  # every tls this controller ever switched
        self.switched_for: dict[str, set[str]] = {}  # EV -> the tls switched (held) for it
        # signals where two EVs' crossing (or merging) movements were shown green at once: then
        # the oracle is no bound a safe controller could reach (tls_id -> the first time)
        self.conflicts: dict[str, float] = {}
        self._foes: dict[str, dict[int, frozenset[int]]] = {}

    def tick(
        self, snapshot: Snapshot, progress: Mapping[str, EvProgress], over_budget: Callable[[], bool] | None = None
    ) -> list[SignalCommand]:
        wanted: dict[str, set[int]] = {}
        wanted_by: dict[str, set[str]] = {}
        for ev, corridor in self._corridors.items():
            p = progress[ev]
            if snapshot.t_s < self._dispatch_s[ev] or p.done:  # (arrived, or gone from the simulation)
                continue
            for j in corridor.junctions:
                if not p.crossed(j.index):
                    wanted.setdefault(j.tls_id, set()).update(self._links[(ev, j.index)])
                    wanted_by.setdefault(j.tls_id, set()).add(ev)
        for tls_id, evs in wanted_by.items():
            for ev in evs:
                self.switched_for.setdefault(ev, set()).add(tls_id)
            if len(evs) > 1 and tls_id not in self.conflicts and self._conflicting(tls_id, evs, progress):
                self.conflicts[tls_id] = snapshot.t_s
        commands: list[SignalCommand] = []
        for tls_id, links in sorted(wanted.items()):
            n = self._network.programs[tls_id].link_count
            state = "".join("G" if i in links else "r" for i in range(n))
            if self._shown.get(tls_id) != state:
                commands.append(SignalCommand(tls_id, "set_state", state=state, reason="oracle: route green"))
                self._shown[tls_id] = state
                self.preempted.add(tls_id)
        for tls_id in sorted(set(self._shown) - set(wanted)):
            commands.append(self._restore(tls_id))
        return commands

    def _conflicting(self, tls_id: str, evs: set[str], progress: Mapping[str, EvProgress]) -> bool:
        """Are two of ``evs``' own movements at the signal foes (cross or merge at its junction)?
        (The approaches' other links, all green too, conflict wherever two approaches are served:
        unsafe for cross traffic, as the oracle is; only the EVs' own movements decide whether it
        is a bound.)"""
        foes = self._foes.get(tls_id)
        if foes is None:
            foes = self._foes[tls_id] = {c.link_index: frozenset(c.foe_links)
                                         for c in self._network.connections_of_tls(tls_id) if c.link_index >= 0}
        sets = [{i for j in self._corridors[ev].junctions if j.tls_id == tls_id and not progress[ev].crossed(j.index)
                 for i in j.link_indices} for ev in sorted(evs)]
        return any(foes.get(a, frozenset()) & b_links
                   for k, a_links in enumerate(sets) for b_links in sets[k + 1:] for a in a_links - b_links)

    def stop(self) -> list[SignalCommand]:
        return [self._restore(tls_id) for tls_id in sorted(self._shown)]

    def _restore(self, tls_id: str) -> SignalCommand:
        del self._shown[tls_id]
        program = self._network.programs[tls_id]
        return SignalCommand(tls_id, "restore", program_id=program.program_id, reason="oracle: EV crossed")


class NoController:
    """Controller ``none``: the signals run their own programs."""

    name = "none"
    preempted: set[str] = set()  # noqa: RUF012 - never mutated

    def tick(
        self, snapshot: Snapshot, progress: Mapping[str, EvProgress], over_budget: Callable[[], bool] | None = None
    ) -> Sequence[SignalCommand]:
        return ()

    def stop(self) -> Sequence[SignalCommand]:
        return ()
