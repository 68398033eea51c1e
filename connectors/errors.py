"""The error catalogue: every error lakeport raises on purpose, by what the user should do about it.

Every message is one line written for the person running lakeport: what went wrong and the
setting, argument or command that fixes it. No message holds a secret. Three families:

- `UserError`: something only the user can fix (configuration, arguments, credentials and
  permissions, a missing topic, table or file). Never retried: retrying cannot help.
- `TransientError`: the world was briefly in the way (broker or storage unreachable, a schema
  registry down, another writer won a race). Retried with bounded backoff (`connectors.retry`)
  before it surfaces; Dagster asks for a retry of the run.
- `DataError`: the data needs a decision (offsets lost to retention under `fail`, a record that
  does not decode under `on_decode_error: fail`, a commit that would break the ledger).

The CLI prints any of them as `lakeport: error: <message>` and exits 2.
"""

from __future__ import annotations


class LakeportError(Exception):
    """An error the CLI prints as one line, without a traceback."""

    retryable: bool = False


# --- the user's to fix ---------------------------------------------------------------------


class UserError(LakeportError):
    """Configuration, arguments, credentials, permissions or a missing thing: fix, then re-run."""


class ConfigError(UserError, ValueError):
    """The configuration file is missing, unreadable or invalid."""


class UsageError(UserError, ValueError):
    """A command or API call was given arguments that cannot work (reversed range, bad time)."""


class SchemaError(UserError, ValueError):
    """An `.avsc` file uses something lakeport cannot map to a Delta column."""


class AccessDenied(UserError):
    """The broker or the storage refused these credentials or this user's permissions."""


class NotFound(UserError):
    """A topic, table, partition or file that the request needs does not exist."""


class ScratchSpaceError(UserError):
    """The local scratch folder (`TMPDIR`) cannot hold what a run stages there."""


# --- transient: retried, then reported -----------------------------------------------------


class TransientError(LakeportError):
    """Something outside lakeport was briefly unavailable; the same request may work later."""

    retryable = True


class BrokerUnavailable(TransientError):
    """The Kafka broker did not answer (down, unreachable, or too slow)."""


class StorageUnavailable(TransientError):
    """The table's storage did not answer (object store down, network, throttling)."""


class RegistryUnavailable(TransientError):
    """The schema registry of an Avro stream did not answer."""


class ConcurrentChange(TransientError):
    """Another writer changed the same partitions first; re-plan from the new ledger."""


# --- the data needs a decision -------------------------------------------------------------


class DataError(LakeportError):
    """The data itself stops the run until someone decides (policy, schema, or a backfill)."""


class RetentionLossError(DataError):
    """Offsets the table still needed were deleted by retention (recorded, then the run stops)."""


class DecodeError(DataError):
    """A record did not decode and the stream's policy is to stop rather than dead-letter."""


class LedgerError(DataError):
    """A commit would break the ledger's invariants (overlap, or progress going backwards)."""
