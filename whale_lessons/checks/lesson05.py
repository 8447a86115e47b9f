"""Lesson 5's check: `whale-check configure`."""
from __future__ import annotations

import contextlib

from whale_lessons.exercises import Missing, check, fetch, find, image_of

#: What the shop's app (lesson 5's challenge image `shop`) takes in CURRENCY.
CURRENCIES = ("EUR", "USD")


def _environment(container) -> dict[str, str]:
    """The container's environment as its process gets it (a later NAME=VALUE wins)."""
    env = {}
    for entry in container.attrs["Config"].get("Env") or []:
        name, _, value = entry.partition("=")
        env[name] = value
    return env


def _ended(container) -> str:
    """How a container that is not running ended, as `docker ps -a` would say it."""
    state = container.attrs["State"]
    if container.status == "exited":
        return f"it exited with code {state['ExitCode']}"
    return f"it is {container.status}"


@check("configure", lesson=5)
def configure(client) -> str:
    """The shop's app `app`, running with CURRENCY=EUR and serving its prices in euros."""
    c = find(client, "app")
    if c is None:
        raise Missing("there is no container named `app`", hints=(
            "the shop's app is a container named `app`, made from the image `shop`",
            "`docker run -d --name NAME [OPTIONS] IMAGE`: docker's options go between "
            "`run` and the image name",
            "run the image `shop` in the background as `app`, with its currency in an "
            "environment variable (`docker logs` of a failed try says which)"))
    if "shop" not in image_of(client, c):
        raise Missing("container `app` was not made from the image `shop`", hints=(
            "the price list comes from the image `shop`; `app` runs another one",
            "`docker rm -f app` frees the name; `docker images` lists `shop` (its "
            "Dockerfile is in the folder `shop`)",
            "remove `app`, then run the image `shop` as `app` in the background, "
            "configured as its log asks"))
    if c.attrs["Path"] != "/app.sh":
        command = " ".join([c.attrs["Path"], *(c.attrs.get("Args") or [])])
        raise Missing(f"`app` does not run the shop's app: it runs `{command}`", hints=(
            "the image's ENTRYPOINT, /app.sh, is the app; `app` was made to run "
            "something else",
            "`--entrypoint` replaces the image's ENTRYPOINT; `docker image inspect "
            "--format '{{json .Config.Entrypoint}}' shop` shows the one it has",
            "remove `app` and run `shop` again as `app` without `--entrypoint` and "
            "without a command after the image name"))
    if c.status == "running" and _environment(c).get("CURRENCY") not in CURRENCIES:
        # The app ends at once without a currency it knows: give it a moment to (if it
        # still runs after 5 s, the wait times out and the check looks at it as it is).
        with contextlib.suppress(Exception):
            c.wait(timeout=5)
        c.reload()
    env = _environment(c)
    currency = env.get("CURRENCY")
    if currency is None:
        given = [arg for arg in c.attrs.get("Args") or [] if "CURRENCY" in arg]
        if given:
            found = (f"its arguments (`.Args`) hold `{' '.join(c.attrs['Args'])}`, but its "
                     "environment has no CURRENCY: whatever follows the image name goes "
                     "to the ENTRYPOINT as arguments, so docker's options go before it. "
                     "Remove `app` and make it again with the option in its place")
        else:
            found = ("its environment has no CURRENCY, and a container's environment is "
                     "set when it is made: remove `app` and make it again with CURRENCY "
                     "set, in euros")
        raise Missing(f"`app` is not running: {_ended(c)}", hints=(
            "an app that stops at once has usually said why before it ended, and Docker "
            "still knows how the container was made",
            "`docker logs app` shows what the app said; `docker inspect --format "
            "'{{json .Config.Env}} {{json .Args}}' app` shows the environment and the "
            "arguments it was given",
            found))
    if currency not in CURRENCIES:
        quoted = len(currency) > 1 and currency[0] == currency[-1] and currency[0] in "\"'"
        raise Missing(f"`app` is not running: {_ended(c)}, with CURRENCY={currency}", hints=(
            "the app got a CURRENCY this time, and did not like its value",
            "`docker logs app` says which values the app takes; `docker inspect --format "
            "'{{json .Config.Env}}' app` shows the exact value it got",
            f"CURRENCY is `{currency}`, but the app takes `EUR` or `USD`"
            + (" (`--env-file` keeps quotes as part of the value)" if quoted else "")
            + ", and the shop's prices are in euros: remove `app` and make it again "
            "with that value"))
    if c.status != "running":
        raise Missing(f"`app` has CURRENCY={currency}, but is not running: {_ended(c)}",
                      hints=(
            "a stopped app serves nobody, however well it is configured",
            "`docker start app` starts it again with the same configuration; "
            "`docker logs app` shows what it said last",
            "start `app` again (its environment stays as it was made), then run the "
            "check again"))
    if currency != "EUR":
        raise Missing(f"`app` runs, but serves its prices in {currency}, not in euros (EUR)",
                      hints=(
            "the app works; the shop sells in euros, and the app reads its currency "
            "from CURRENCY",
            "`docker inspect --format '{{json .Config.Env}}' app` shows its environment; "
            "it is set when a container is made, so `docker rm -f app` and make it again",
            f"CURRENCY is {currency}: remove `app` and make it again with the code of "
            "the euro instead"))
    networks = c.attrs["NetworkSettings"]["Networks"] or {}
    reach = next(((name, net["IPAddress"]) for name, net in sorted(networks.items())
                  if net.get("IPAddress")), None)
    page = fetch(client, f"http://{reach[1]}:8080/", network=reach[0]) if reach else None
    if page is None or "EUR" not in page:
        raise Missing("`app` runs with CURRENCY=EUR, but its price list does not answer "
                      "on port 8080", hints=(
            "the check asks `app` for its page over its network, as another container "
            "would",
            "`docker logs app` says what the app serves; `docker inspect --format "
            "'{{json .NetworkSettings.Networks}}' app` shows the networks it is on",
            "run `app` on the default network (no `--network` option), from the image "
            "`shop` as it is"))
    return f"app serves its prices in euros ({page.strip()}), with CURRENCY=EUR"
