"""The story `make demo` plays (bin/demo runs it against the service it started): who is texted, who
answers and how, and what to look at afterwards. Each scene goes through the service's real endpoints,
with LimaCharlie's and Twilio's side played by bin/demo's `Demo` (the fakes of the test suite)."""

from __future__ import annotations

import html
import json
import re
import sys
import time
from collections.abc import Callable
from typing import Any

SENDER = "+14155550199"
PEOPLE = {"+14155550100": "Alice", "+14155550101": "Bob", "+14155550102": "Carol", "+14155550198": "(no one)"}
ALICE, BOB, CAROL, NOBODY = PEOPLE
FLOOD_LIMIT = 3  # texts per recipient per window in the demo (FLOOD_RECIPIENT_LIMIT)
ACK_WITHIN = "0.1"  # minutes Bob has before the call (6 s; a real rule would say 5 or 10)
SENSOR = "bb4b30af-ff11-4ff4-836f-f014ada33345"  # the sensor a rule would isolate once approved
# What each event shown from LimaCharlie's hook adds, by kind.
EVENT_DETAIL = {
    "acknowledged": "acknowledged_channel",
    "escalated": "action",
    "failed": "error_meaning",
    "undelivered": "error_meaning",
    "approved": "responder_channel",
    "denied": "responder_channel",
}


def say(text: str = "") -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def spoken(twiml: str) -> str:
    """What a TwiML answer says or texts, without its markup."""
    parts = re.findall(r"<(?:Say|Message)>(.*?)</(?:Say|Message)>", twiml, re.DOTALL)
    return html.unescape(" ".join(parts[:2]))


def wait(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise TimeoutError(f"gave up waiting for {what} after {timeout:.0f} s")


def story(demo: Any) -> None:
    say("\n1. A detection texts Alice; she replies with the alert's code.")
    demo.run("[CRIT] Ransomware canary modified on fs-01", ALICE)
    text = demo.text_to(ALICE, "Ransomware")
    code = re.search(r"Reply (\S+) to acknowledge", text["body"])
    if code is None:
        raise RuntimeError(f"the alert text carries no code: {text['body']!r}")
    time.sleep(1)
    say(
        f"  [Alice replies] 'ack {code.group(1)}'  ->  the service answers: {demo.reply(ALICE, 'ack ' + code.group(1))!r}"
    )

    say(f"\n2. Bob is texted with ack_within {ACK_WITHIN} min and escalate: call; he does not reply.")
    demo.run("[HIGH] Credential dumping (lsass) on dc-02", BOB, ack_within=ACK_WITHIN, escalate="call")
    call = wait(lambda: next(iter(demo.twilio.calls), None), 60, "the escalation's call to Bob")
    say(f"  [Bob's phone rings] the call says: {spoken(call['twiml'])!r}")
    for status in ("ringing", "in-progress"):
        demo.webhook(demo.twilio.call_status(call, status, demo.auth_token))
    say(f"  [Bob presses 1]  ->  the call answers: {demo.webhook(demo.twilio.gather(call, '1', demo.auth_token))!r}")
    demo.webhook(demo.twilio.call_status(call, "completed", demo.auth_token))

    say("\n3. A rule texts a number Twilio refuses (error 21211, invalid 'To').")
    demo.run("[MED] New admin user on ws-22", NOBODY)
    wait(lambda: demo.count("failed") >= 1, 60, "the refused text to be recorded as failed")
    say("  Twilio answered 400 / 21211: the delivery is failed at once, with Twilio's code, and never retried.")

    say(f"\n4. A noisy rule texts Carol {FLOOD_LIMIT + 1} times in a row; flood control holds one back.")
    for n in range(1, FLOOD_LIMIT + 2):
        demo.run(f"[LOW] Port scan from 10.0.0.5 ({n} of {FLOOD_LIMIT + 1})", CAROL)
    wait(lambda: demo.count("suppressed") >= 1, 60, "flood control to hold one back")
    say(
        f"  {FLOOD_LIMIT} sent; one is held back: 'suppressed', recipient's limit (FLOOD_RECIPIENT_LIMIT={FLOOD_LIMIT})."
    )
    wait(lambda: demo.all_receipted(2 + FLOOD_LIMIT), 30, "the receipts of the texts sent")
    approval(demo)
    hook(demo)


def approval(demo: Any) -> None:
    say("\n5. A rule asks Alice and Bob before it isolates ws-180; Bob approves from his phone.")
    question = "Isolate ws-180 from the network?"
    demo.request(
        "request_approval",
        {
            "question": question,
            "from": SENDER,
            "to": [ALICE, BOB],
            "timeout_seconds": 300,
            "approved_content": {"sid": SENSOR},
            "context": {"hostname": "ws-180", "sid": SENSOR},
        },
    )
    text = demo.text_to(BOB, question)
    wait(lambda: text["sid"] in demo.seen, 10, "Bob's phone to show the question")
    code = re.search(r"Reply (\S+) Y to approve", text["body"])
    if code is None:
        raise RuntimeError(f"the question carries no code: {text['body']!r}")
    answer = f"{code.group(1)} Y"
    say(f"  [Bob replies] {answer!r}  ->  the service answers: {demo.reply(BOB, answer)!r}")


def hook(demo: Any) -> None:
    """The events the organisation's LimaCharlie received, as a D&R rule there would see them."""
    expected = {"acknowledged": 2, "escalated": 1, "failed": 1, "approved": 1}

    def arrived() -> list[dict[str, Any]] | None:
        events = demo.lc.events(demo.oid)
        kinds = [event["kind"] for event in events]
        return events if all(kinds.count(kind) >= n for kind, n in expected.items()) else None

    events = wait(arrived, 30, "the events at LimaCharlie's hook")
    say("\n6. Every outcome came back into LimaCharlie as an event of the ext-twilio adapter:")
    for event in events:
        detail = event.get(EVENT_DETAIL.get(event["kind"], ""), "")
        say(f"  [LimaCharlie's hook] {event['kind']:<13}{event['recipient'] or '-':<14} {detail}".rstrip())
    say(
        "  The 'approved' event carries the rule's content and context "
        f"({json.dumps(next(e for e in events if e['kind'] == 'approved')['content'])}): "
        "a D&R rule there isolates that sensor."
    )


def guide(demo: Any, once: bool) -> None:
    say(
        f"""
The story is over. Open the audit desk:

  {demo.base}/admin/     login: demo    password: {demo.password}

What to look at:
  - Deliveries: Alice's alert acknowledged by SMS, Bob's by voice (open it: the text, the call, its
    status callbacks and the keypress in one timeline); the text to {NOBODY} failed with 21211;
    one of Carol's four alerts held back by flood control. Filter by status, error code or acknowledged.
  - Inbound messages: Alice's reply and Bob's answer, kept whole, and what the service texted back.
  - Approvals: 'Isolate ws-180 from the network?', approved by Bob by SMS: who, when, which channel.
  - Outbound events: what was posted to LimaCharlie, one POST per batch; Webhook adapters: the
    organisation's adapter, made when it subscribed.
  - In about a minute Carol gets one summary text: how many alerts flood control held back.

The service's own log: {demo.var_dir / "run.log"}. Its data live in {demo.var_dir} (emptied at each demo)."""
    )
    if not once:
        say("Ctrl-C stops the service and the stand-ins for LimaCharlie and Twilio.")
