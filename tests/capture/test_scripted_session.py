"""The scripted kit drives a real AgentSession: events and history come out as from a live toy."""

import asyncio
from typing import NamedTuple

import pytest
from livekit.agents import llm
from livekit.agents.voice import AgentSession, SpeechHandle
from livekit.agents.voice.events import (
    ConversationItemAddedEvent,
    SpeechCreatedEvent,
    UserInputTranscribedEvent,
)

from voicelog.agent.simulation.scripted import ScriptTurn, final_segments, run_conversation

TIME_SCALE = 0.1  # the barge-in needs slack: the cut reply plays ~0.3 s at this scale
BARGED = 1  # the reply the next user turn talks over
SCRIPT: list[ScriptTurn] = [
    {
        "user": "Hi there 👋 can you sing me a song?",
        "agent": "Of course! La la la, here is a little song about a happy bear 🐻.",
    },
    {
        "user": "你好 小熊 给我 讲个 故事吧",
        "agent": "好的！从前有一只小熊，它住在森林里，每天都去河边钓鱼。"
                 "有一天，它遇到了一只会唱歌的小鸟，它们成了最好的朋友。",
        "barge_in_after_chars": 8,
    },
    {"user": "مرحبا كيف حالك اليوم يا صديقي", "agent": "أنا بخير، شكرا لك! وأنت؟"},
]


class Seen(NamedTuple):
    """One recorded session event, reduced to the fields the capture path reads."""

    kind: str  # transcribed | speech_created | item | handle_done
    text: str = ""
    is_final: bool = False
    role: str = ""
    interrupted: bool = False
    source: str = ""
    user_initiated: bool = False
    item_ids: tuple[str, ...] = ()


class EventLog:
    """Records the chat-relevant events of one session in emission order."""

    def __init__(self) -> None:
        self.events: list[Seen] = []
        self.history: list = []

    def attach(self, session: AgentSession) -> None:
        session.on("user_input_transcribed", self._on_transcribed)
        session.on("speech_created", self._on_speech_created)
        session.on("conversation_item_added", self._on_item)

    def _on_transcribed(self, ev: UserInputTranscribedEvent) -> None:
        self.events.append(Seen("transcribed", ev.transcript, is_final=ev.is_final))

    def _on_speech_created(self, ev: SpeechCreatedEvent) -> None:
        self.events.append(
            Seen("speech_created", source=ev.source, user_initiated=ev.user_initiated)
        )
        ev.speech_handle.add_done_callback(self._on_done)

    def _on_done(self, handle: SpeechHandle) -> None:
        ids = tuple(item.id for item in handle.chat_items)
        self.events.append(Seen("handle_done", interrupted=handle.interrupted, item_ids=ids))

    def _on_item(self, ev: ConversationItemAddedEvent) -> None:
        if isinstance(item := ev.item, llm.ChatMessage):
            self.events.append(
                Seen("item", item.text_content or "", role=item.role,
                     interrupted=item.interrupted, item_ids=(item.id,))
            )

    def where(self, kind: str, **fields: object) -> list[int]:
        """Indexes of the events of ``kind`` whose fields equal ``fields``."""
        return [
            i for i, ev in enumerate(self.events)
            if ev.kind == kind and all(getattr(ev, k) == v for k, v in fields.items())
        ]

    def items(self, role: str) -> list[Seen]:
        return [self.events[i] for i in self.where("item", role=role)]


@pytest.fixture(scope="module")
def log() -> EventLog:
    """One recorded run of SCRIPT, shared by the tests that only read it."""
    log = EventLog()

    async def record() -> None:
        run = run_conversation(SCRIPT, time_scale=TIME_SCALE, on_session=log.attach)
        log.history = await asyncio.wait_for(run, timeout=30)

    asyncio.run(record())
    return log


def spoken(text: str) -> str:
    """The user message LiveKit commits for ``text``: its finals joined by one space."""
    return " ".join(final_segments(text))


def test_final_segments_split_at_whitespace_into_at_most_three():
    """An utterance becomes up to three finals cut at spaces; unspaced text stays whole."""
    assert final_segments("one two three four five six seven") == [
        "one two three", "four five six", "seven"]
    assert final_segments("我喜欢熊猫") == ["我喜欢熊猫"]


def test_each_user_turn_arrives_as_several_final_transcripts(log):
    """Every scripted utterance reaches user_input_transcribed as two or more finals."""
    finals = [log.events[i].text for i in log.where("transcribed", is_final=True)]
    assert finals == [seg for turn in SCRIPT for seg in final_segments(turn["user"])]
    assert all(len(final_segments(turn["user"])) >= 2 for turn in SCRIPT)


def test_every_final_is_preceded_by_an_interim_of_the_same_words(log):
    """Interim transcripts stream in before each final, as from a streaming STT."""
    transcribed = [ev for ev in log.events if ev.kind == "transcribed"]
    for before, final in zip(transcribed, transcribed[1:]):
        if final.is_final:
            assert (before.is_final, before.text) == (False, final.text)


def test_each_user_turn_commits_one_user_message_with_the_full_text(log):
    """Several finals still make exactly one committed user message per turn."""
    assert [ev.text for ev in log.items("user")] == [spoken(t["user"]) for t in SCRIPT]
    assert not any(ev.interrupted for ev in log.items("user"))


def test_each_reply_commits_one_assistant_message(log):
    """Every scripted reply, cut or not, adds exactly one assistant message."""
    assert len(log.items("assistant")) == len(SCRIPT)


def test_barged_in_reply_is_interrupted_and_cut_to_the_heard_text(log):
    """The reply the user talks over is stored interrupted with a strict prefix of its text."""
    cut, scripted = log.items("assistant")[BARGED], SCRIPT[BARGED]["agent"]
    assert cut.interrupted
    assert 0 < len(cut.text) < len(scripted)
    assert scripted.startswith(cut.text)


def test_replies_that_play_out_keep_their_full_text(log):
    """Replies nobody talks over are stored whole and not interrupted."""
    for k, reply in enumerate(log.items("assistant")):
        if k != BARGED:
            assert (reply.text, reply.interrupted) == (SCRIPT[k]["agent"], False)


def test_a_normal_turn_goes_final_speech_created_user_item_assistant_item_done(log):
    """For a turn that plays out, the reply is scheduled before the user message is added."""
    last_final = log.where("transcribed", text=final_segments(SCRIPT[0]["user"])[-1])[-1]
    created = log.where("speech_created")[0]
    user_item = log.where("item", role="user")[0]
    reply_item = log.where("item", role="assistant")[0]
    done = log.where("handle_done")[0]
    assert last_final < created < user_item < reply_item < done


def test_barge_in_adds_the_cut_reply_after_the_interim_and_before_the_final(log):
    """The interrupted reply lands right after the interrupting interim, before its finals."""
    cut = log.where("item", role="assistant", interrupted=True)
    assert len(cut) == 1
    interim = log.events[cut[0] - 1]
    assert interim.kind == "transcribed" and not interim.is_final
    assert interim.text in SCRIPT[BARGED + 1]["user"]
    first_final = log.where("transcribed", text=final_segments(SCRIPT[BARGED + 1]["user"])[0])
    assert cut[0] < first_final[0] < log.where("speech_created")[BARGED + 1]


def test_done_speech_handle_holds_just_its_assistant_message(log):
    """A done handle's chat_items is the assistant message, added before the done callback."""
    replies, dones = log.where("item", role="assistant"), log.where("handle_done")
    assert [log.events[i].item_ids for i in dones] == [log.events[i].item_ids for i in replies]
    assert all(reply < done for reply, done in zip(replies, dones))
    assert [log.events[i].interrupted for i in dones] == [k == BARGED for k in range(len(SCRIPT))]


def test_replies_are_user_initiated_generate_reply_speeches(log):
    """Automatic replies report source generate_reply and user_initiated True."""
    created = [log.events[i] for i in log.where("speech_created")]
    assert [(ev.source, ev.user_initiated) for ev in created] == [("generate_reply", True)] * 3


def test_returned_history_matches_the_committed_items(log):
    """run_conversation returns the user and assistant messages as the events reported them."""
    committed = [(ev.role, ev.text, ev.interrupted) for ev in log.events if ev.kind == "item"]
    assert [tuple(entry) for entry in log.history] == committed


async def test_empty_user_text_is_rejected_before_a_session_starts():
    """A turn with no user words could never end, so the script is refused up front."""
    with pytest.raises(ValueError):
        await run_conversation([{"user": "  ", "agent": "hi"}], time_scale=TIME_SCALE)


def concurrent_script(session: int) -> list[ScriptTurn]:
    """Five turns for one of many sessions, with a barge-in on the second reply."""
    return [
        {
            "user": f"toy {session} turn {k} what is your favourite colour",
            "agent": f"Reply {k} for toy {session}: I like blue, like the sky and the sea!",
            "barge_in_after_chars": 10 if k == 1 else None,
        }
        for k in range(5)
    ]


async def test_twenty_concurrent_sessions_of_five_turns_all_complete():
    """Twenty sessions at 50x speed in one loop each commit every user and agent message."""
    scripts = [concurrent_script(i) for i in range(20)]
    runs = (run_conversation(script, time_scale=0.02) for script in scripts)
    histories = await asyncio.wait_for(asyncio.gather(*runs), timeout=60)
    for script, history in zip(scripts, histories):
        assert [entry.role for entry in history] == ["user", "assistant"] * 5
        assert [e.text for e in history if e.role == "user"] == [t["user"] for t in script]
