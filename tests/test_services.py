"""Swarm objects a deployed site makes for its learners (whale_hub/services.py), on a real
one-node Swarm: a classroom engine in swarm mode."""
from __future__ import annotations

import pytest
from engine_fixtures import start_engine

from whale_core.layout import OWNER_LABEL, SITE_LABEL
from whale_hub.services import ensure_secret, remove_secrets

pytestmark = pytest.mark.docker


def test_a_learners_old_secrets_go_and_a_name_alike_learners_stay(engine_image, host_docker,
                                                                   tmp_path_factory):
    """`whale-engine-sam-` also begins the names of sam-x's secrets (and of sam's on
    another site): removing sam's old ones takes only those whose labels are sam's here."""
    engine = start_engine("secrets", tmp_path_factory, host_docker, swarm=True)
    try:
        client = engine.wait_ready().client(timeout=30)
        try:
            sam = {OWNER_LABEL: "sam", SITE_LABEL: "here"}
            _, old = ensure_secret(client, "whale-engine-sam", "ca.pem", b"old", sam)
            _, new = ensure_secret(client, "whale-engine-sam", "ca.pem", b"new", sam)
            assert ensure_secret(client, "whale-engine-sam", "ca.pem", b"new", sam)[1] == new
            _, sam_x = ensure_secret(client, "whale-engine-sam-x", "ca.pem", b"x",
                                     {OWNER_LABEL: "sam-x", SITE_LABEL: "here"})
            _, elsewhere = ensure_secret(client, "whale-engine-sam", "key.pem", b"k",
                                         {OWNER_LABEL: "sam", SITE_LABEL: "another site"})
            assert sam_x.startswith("whale-engine-sam-")
            remove_secrets(client, "whale-engine-sam", sam, keep={new})
            left = {s["Spec"]["Name"] for s in client.api.secrets()}
            assert old not in left
            assert {new, sam_x, elsewhere} <= left
        finally:
            client.close()
    finally:
        engine.remove()
