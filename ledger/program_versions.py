"""Program versions recorded in the event store (CONTRACT contract 2, section 11).

``ProgramVersions`` is one aggregate per event store: the file of every
program version a worker has run, recorded the first time one runs it. So
read models, ``verify`` and replay can use the version each outcome fact
names (``program_version``) and give the rows the live run gave after the
program file changed. A worker refuses a program whose version is lower
than the highest recorded (a rollback must be a new, higher version), and
a recorded version whose file changed (a change must raise the version).
"""

from __future__ import annotations

from uuid import NAMESPACE_URL, uuid5

from eventsourcing.domain import Aggregate

from ledger.program import Program, parse_program

PROGRAM_VERSIONS_ID = uuid5(NAMESPACE_URL, "urn:loyalty-ledger:program-versions")


class ProgramVersionRefused(Exception):
    """A program a worker must not run against this event store; the message says why."""


class ProgramVersions(Aggregate):
    """The file of each program version run against this event store, by version."""

    class Started(Aggregate.Created):
        pass

    class VersionRecorded(Aggregate.Event):
        version: int
        name: str
        text: str

        def apply(self, registry: "ProgramVersions") -> None:
            registry.files[str(self.version)] = self.text

    def __init__(self) -> None:
        self.files: dict[str, str] = {}

    @classmethod
    def start(cls) -> "ProgramVersions":
        return cls._create(cls.Started, id=PROGRAM_VERSIONS_ID)

    @property
    def highest(self) -> int:
        return max(map(int, self.files), default=0)

    def refusal(self, program: Program) -> str | None:
        """Why ``program`` must not run here, or None."""
        if program.version < self.highest:
            return (f"program {program.name!r} version {program.version} is lower than version "
                    f"{self.highest} already recorded in the event store; a rollback must be a "
                    f"new, higher version")
        recorded = self.files.get(str(program.version))
        if recorded is not None and recorded != program.source_text:
            return (f"program {program.name!r} version {program.version} is recorded in the event "
                    f"store with another file; a changed program must raise program.version")
        return None

    def record(self, program: Program) -> None:
        """Record ``program``'s file unless its version is already recorded."""
        if str(program.version) not in self.files:
            self.trigger_event(self.VersionRecorded, version=program.version, name=program.name,
                               text=program.source_text)

    def program(self, version: int) -> Program | None:
        text = self.files.get(str(version))
        return None if text is None else parse_program(text, f"<program version {version}>")
