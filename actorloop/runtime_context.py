"""``actorloop.get_runtime_context()``: who and where the calling code runs (Ray's ``ray.runtime_context``).

Example::

    @actorloop.remote
    class Worker:
        def whoami(self):
            ctx = actorloop.get_runtime_context()
            return ctx.get_actor_id(), ctx.get_actor_name(), ctx.namespace
"""

from __future__ import annotations

import hashlib
from typing import Any

from . import _backend
from ._handles import ActorHandle
from ._runtime import Runtime, require_runtime

__all__ = ["RuntimeContext", "get_runtime_context"]


class RuntimeContext:
    """What the current process knows of itself: job, node, namespace and, inside an actor, the actor."""

    def __init__(self, runtime: Runtime) -> None:
        self._rt = runtime

    # -- where -----------------------------------------------------------------

    def get_job_id(self) -> str:
        """The id of the job: the driver process that started this work (hex)."""
        return self._rt.job_id

    @property
    def job_id(self) -> str:
        """``get_job_id()`` (Ray's deprecated property form)."""
        return self.get_job_id()

    def get_node_id(self) -> str:
        """The id of the node (hex; one node per machine and directory)."""
        return hashlib.sha256(self._rt.node_dir.encode()).hexdigest()[:56]

    @property
    def node_id(self) -> str:
        """``get_node_id()`` (Ray's deprecated property form)."""
        return self.get_node_id()

    @property
    def gcs_address(self) -> str:
        """The node's address (its directory), as ``actorloop.init(address=...)`` takes it."""
        return self._rt.node_dir

    def get_worker_id(self) -> str:
        """The id of this process's connection to the node (hex)."""
        return self._rt.client_id

    @property
    def namespace(self) -> str:
        """The namespace names are looked up in by default."""
        return self._rt.namespace

    def get_namespace(self) -> str:
        """The namespace names are looked up in by default."""
        return self._rt.namespace

    def get_assigned_resources(self) -> dict[str, float]:
        """Resources reserved for this worker: none (resources are not reserved on one machine)."""
        return {}

    def get_accelerator_ids(self) -> dict[str, list[str]]:
        """Accelerators assigned to this worker: none are managed."""
        return {"GPU": []}

    def get_runtime_env_string(self) -> str:
        """The runtime environment, as JSON (only ``env_vars`` exist here)."""
        import json

        return json.dumps({"env_vars": dict(self._rt.env_vars)} if self._rt.env_vars else {})

    @property
    def runtime_env(self) -> dict[str, Any]:
        """The runtime environment (only ``env_vars`` exist here)."""
        return {"env_vars": dict(self._rt.env_vars)} if self._rt.env_vars else {}

    # -- the actor -------------------------------------------------------------

    def get_actor_id(self) -> str | None:
        """The id of the current actor, or None outside an actor."""
        return self._rt.actor_id

    @property
    def actor_id(self) -> str | None:
        """``get_actor_id()`` (Ray's deprecated property form)."""
        return self.get_actor_id()

    def get_actor_name(self) -> str | None:
        """The name of the current actor, or None (an anonymous actor, or outside an actor)."""
        return self._rt.actor_name

    def get_task_id(self) -> str | None:
        """Not tracked per call on actorloop: None."""
        return None

    def get_task_name(self) -> str | None:
        """Not tracked per call on actorloop: None."""
        return None

    @property
    def current_actor(self) -> ActorHandle[Any]:
        """A handle to the current actor; RuntimeError outside an actor."""
        rt = self._rt
        if rt.actor_id is None or rt.actor_meta is None:
            raise RuntimeError("current_actor is only available inside an actor")
        state = rt.state_for(rt.actor_id, rt.actor_meta, rt.actor_caller_options, created_here=False)
        return ActorHandle(rt.actor_id, rt.actor_meta, rt.actor_http_url, state)

    @property
    def was_current_actor_reconstructed(self) -> bool:
        """Whether the current actor was restarted after a crash (False outside an actor)."""
        return self._rt.actor_id is not None and self._rt.actor_epoch > 0

    def get(self) -> dict[str, Any]:
        """The main facts as a dict (Ray's deprecated ``get()``)."""
        return {
            "job_id": self.get_job_id(),
            "node_id": self.get_node_id(),
            "namespace": self.namespace,
            "actor_id": self.get_actor_id(),
        }

    def __repr__(self) -> str:
        return f"RuntimeContext(job={self.get_job_id()}, actor={self.get_actor_id()}, namespace={self.namespace!r})"


def get_runtime_context() -> RuntimeContext:
    """The runtime context of the calling process (``init()`` is called first if needed, as in Ray)."""
    backend = _backend.implied()
    if backend is not None:  # backend hook: Ray's context, with actorloop handles
        return backend.runtime_context()  # type: ignore[no-any-return]
    return RuntimeContext(require_runtime())
