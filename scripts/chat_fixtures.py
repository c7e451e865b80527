#!/usr/bin/env python3
"""Chat-template fixtures: small tokenizers carrying the chat templates of real model
families, and what transformers' apply_chat_template makes of conversations with them.

Run from the repository root (make_fixtures.py also calls it):

    .venv/bin/python scripts/chat_fixtures.py

No downloads: the templates below are the public text of each family's
tokenizer_config.json (trimmed of tool-calling branches these conversations never reach),
and the tokenizers are trained here on a few sentences, with the families' special tokens
and BOS rules, then saved and loaded back with AutoTokenizer, so every recorded id is what
transformers does with the saved folder.

For each family this writes tests/fixtures/chat/<family>/: the tokenizer files
transformers saves (tokenizer.json, tokenizer_config.json, and chat_template.jinja where
transformers puts the template there), generation_config.json, and cases.json:
  cases: [{name, messages, add_generation_prompt, text, ids} or {..., error}]
         text = apply_chat_template(tokenize=False), ids = apply_chat_template(tokenize=True)
  plain: [{text, ids}]  ids = tokenizer(text)["input_ids"] (the BOS the tokenizer adds)
  eos_token_ids: GenerationConfig.from_pretrained(dir).eos_token_id, as a list
Deterministic: re-running reproduces byte-identical files.
"""

import json
import os
import shutil

import transformers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import AutoTokenizer, GenerationConfig, PreTrainedTokenizerFast

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "chat")

LLAMA3 = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
    "+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
    "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}"
    "{% endif %}"
)

LLAMA31 = """{{- bos_token }}
{%- if custom_tools is defined %}
    {%- set tools = custom_tools %}
{%- endif %}
{%- if not tools_in_user_message is defined %}
    {%- set tools_in_user_message = true %}
{%- endif %}
{%- if not date_string is defined %}
    {%- set date_string = "26 Jul 2024" %}
{%- endif %}
{%- if not tools is defined %}
    {%- set tools = none %}
{%- endif %}

{#- This block extracts the system message, so we can slot it into the right place. #}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content']|trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}

{#- System message + builtin tools #}
{{- "<|start_header_id|>system<|end_header_id|>\\n\\n" }}
{%- if builtin_tools is defined or tools is not none %}
    {{- "Environment: ipython\\n" }}
{%- endif %}
{%- if builtin_tools is defined %}
    {{- "Tools: " + builtin_tools | reject('equalto', 'code_interpreter') | join(", ") + "\\n\\n"}}
{%- endif %}
{{- "Cutting Knowledge Date: December 2023\\n" }}
{{- "Today Date: " + date_string + "\\n\\n" }}
{%- if tools is not none and not tools_in_user_message %}
    {{- "You have access to the following functions. To call a function, please respond with JSON for a function call." }}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
    {{- "Do not use variables.\\n\\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\\n\\n" }}
    {%- endfor %}
{%- endif %}
{{- system_message }}
{{- "<|eot_id|>" }}

{%- for message in messages %}
    {%- if not (message.role == 'ipython' or message.role == 'tool' or 'tool_calls' in message) %}
        {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' }}
    {%- elif 'tool_calls' in message %}
        {{- raise_exception("This fixture's template does not call tools.") }}
    {%- else %}
        {{- "<|start_header_id|>ipython<|end_header_id|>\\n\\n" }}
        {%- if message.content is mapping or message.content is iterable %}
            {{- message.content | tojson }}
        {%- else %}
            {{- message.content }}
        {%- endif %}
        {{- "<|eot_id|>" }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}
{%- endif %}
"""

QWEN25 = """{%- if tools %}
    {{- '<|im_start|>system\\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}
    {%- endif %}
    {{- "\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\nYou are provided with function signatures within <tools></tools> XML tags:\\n<tools>" }}
    {%- for tool in tools %}
        {{- "\\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\\n<tool_call>\\n{\\"name\\": <function-name>, \\"arguments\\": <args-json-object>}\\n</tool_call><|im_end|>\\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}
    {%- else %}
        {{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}
            {{- '\\n' + message.content }}
        {%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '\\n<tool_call>\\n{"name": "' }}
            {{- tool_call.name }}
            {{- '", "arguments": ' }}
            {{- tool_call.arguments | tojson }}
            {{- '}\\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\\n' }}
    {%- elif message.role == "tool" %}
        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\\n<tool_response>\\n' }}
        {{- message.content }}
        {{- '\\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
{%- endif %}
"""

CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content']"
    " + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# Mistral-7B-Instruct-v0.3's template without its tool branches: an optional system
# message goes into the last user turn; roles must alternate.
MISTRAL = """{%- if messages[0]["role"] == "system" %}
    {%- set system_message = messages[0]["content"] %}
    {%- set loop_messages = messages[1:] %}
{%- else %}
    {%- set loop_messages = messages %}
{%- endif %}
{%- set user_messages = loop_messages | selectattr("role", "equalto", "user") | list %}

{#- This block checks for alternating user/assistant messages, skipping tool calling messages #}
{%- set ns = namespace() %}
{%- set ns.index = 0 %}
{%- for message in loop_messages %}
    {%- if not (message.role == "tool" or message.role == "tool_results" or (message.tool_calls is defined and message.tool_calls is not none)) %}
        {%- if (message["role"] == "user") != (ns.index % 2 == 0) %}
            {{- raise_exception("After the optional system message, conversation roles must alternate user/assistant/user/assistant/...") }}
        {%- endif %}
        {%- set ns.index = ns.index + 1 %}
    {%- endif %}
{%- endfor %}

{{- bos_token }}
{%- for message in loop_messages %}
    {%- if message["role"] == "user" %}
        {%- if loop.last and system_message is defined %}
            {{- "[INST] " + system_message + "\\n\\n" + message["content"] + "[/INST]" }}
        {%- else %}
            {{- "[INST] " + message["content"] + "[/INST]" }}
        {%- endif %}
    {%- elif message["role"] == "assistant" %}
        {{- " " + message["content"]|trim + eos_token}}
    {%- else %}
        {{- raise_exception("Only user and assistant roles are supported, with the exception of an initial optional system message!") }}
    {%- endif %}
{%- endfor %}
"""

CORPUS = [
    "Name a river in the north. The river Avel runs past the mill and into the sea.",
    "You are a terse assistant. What is the capital of Dunford? The capital is Dunford.",
    "Hi there! Hello. How can I help? Tell me about the river Avel.",
    "Ada lives in the town of Dunford, past the mill, in the hills with three goats.",
    "Cafe au lait, s'il vous plait? Two lines. Voila.",
    "It runs past the mill and into the sea. You are a helpful assistant.",
] * 3


def user(text):
    return {"role": "user", "content": text}


def assistant(text):
    return {"role": "assistant", "content": text}


def system(text):
    return {"role": "system", "content": text}


CONVERSATIONS = [
    ("single", [user("Name a river in the north.")]),
    ("system", [system("You are a terse assistant."), user("What is the capital of Dunford?")]),
    ("multi", [user("Hi there!"), assistant("Hello. How can I help?"), user("Tell me about the river Avel.")]),
    (
        "system_multi_done",
        [
            system("You are a terse assistant."),
            user("Hi there!"),
            assistant("Hello. How can I help?"),
            user("Tell me about the river Avel."),
            assistant("It runs past the mill and into the sea."),
        ],
    ),
    (
        "whitespace_unicode",
        [
            user("  Caf\u00e9 au lait, s'il vous pla\u00eet?\n\nTwo lines.  "),
            assistant(" Voil\u00e0 \u2014 \u65e5\u672c \U0001f642 "),
            user("{{ not a tag }} and {% neither %}"),
        ],
    ),
]

# Roles that do not alternate: templates that check (Mistral's) refuse them.
NOT_ALTERNATING = ("not_alternating", [user("Hi there!"), user("Tell me about the river Avel.")])

PLAIN = ["Name a river in the north.", " Two lines.\nVoila."]


def byte_level(specials, vocab_size, bos=None):
    """A byte-level BPE (GPT-2, Llama 3, Qwen); with `bos`, a post-processor that puts it
    before every text, as Llama 3's does."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS, trainer)
    steps = [processors.ByteLevel(trim_offsets=False)]
    if bos is not None:
        bos_id = tok.token_to_id(bos)
        steps.append(
            processors.TemplateProcessing(
                single=f"{bos}:0 $A:0", pair=f"{bos}:0 $A:0 {bos}:1 $B:1", special_tokens=[(bos, bos_id)]
            )
        )
    tok.post_processor = processors.Sequence(steps) if len(steps) > 1 else steps[0]
    return tok


def metaspace(specials, vocab_size, bos):
    """A SentencePiece-style BPE (Llama 2, Mistral): spaces as "▁", one before the first
    word, unknown characters as <unk>, and BOS put before every text."""
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first", split=False)
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="first", split=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=2, special_tokens=specials, show_progress=False
    )
    tok.train_from_iterator(CORPUS, trainer)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos}:0 $A:0", pair=f"{bos}:0 $A:0 {bos}:1 $B:1", special_tokens=[(bos, tok.token_to_id(bos))]
    )
    return tok


LLAMA3_SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
QWEN_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

# (family, backend tokenizer, tokenizer kwargs, generation_config kwargs, save_jinja_files)
FAMILIES = [
    (
        "llama3",
        lambda: byte_level(LLAMA3_SPECIALS, 340, bos="<|begin_of_text|>"),
        dict(bos_token="<|begin_of_text|>", eos_token="<|eot_id|>", chat_template=LLAMA3),
        dict(eos_token_ids=["<|end_of_text|>", "<|eot_id|>"], do_sample=True, temperature=0.6, top_p=0.9),
        False,
    ),
    (
        "llama3.1",
        lambda: byte_level(LLAMA3_SPECIALS, 340, bos="<|begin_of_text|>"),
        dict(bos_token="<|begin_of_text|>", eos_token="<|eot_id|>", chat_template=LLAMA31),
        dict(eos_token_ids=["<|end_of_text|>", "<|eot_id|>"], do_sample=True, temperature=0.6, top_p=0.9),
        True,
    ),
    (
        "qwen2.5",
        lambda: byte_level(QWEN_SPECIALS, 330),
        dict(eos_token="<|im_end|>", pad_token="<|endoftext|>", chat_template=QWEN25),
        dict(
            eos_token_ids=["<|im_end|>", "<|endoftext|>"],
            do_sample=True,
            temperature=0.7,
            top_p=0.8,
            top_k=20,
            repetition_penalty=1.05,
        ),
        True,
    ),
    (
        "chatml",
        lambda: byte_level(QWEN_SPECIALS, 330),
        dict(eos_token="<|im_end|>", pad_token="<|endoftext|>", chat_template=CHATML),
        dict(eos_token_ids=["<|im_end|>"]),
        False,
    ),
    (
        "mistral",
        lambda: metaspace(["<unk>", "<s>", "</s>", "[INST]", "[/INST]"], 200, bos="<s>"),
        dict(
            bos_token="<s>",
            eos_token="</s>",
            unk_token="<unk>",
            add_bos_token=True,
            add_eos_token=False,
            chat_template=MISTRAL,
        ),
        dict(eos_token_ids=["</s>"]),
        True,
    ),
]


def input_ids(encoded):
    """apply_chat_template(tokenize=True) returns a BatchEncoding in transformers 5."""
    return list(encoded["input_ids"]) if hasattr(encoded, "keys") else list(encoded)


def compact(record):
    """JSON with one case per line: small, and a diff shows which case changed."""
    dump = lambda v: json.dumps(v, ensure_ascii=False)  # noqa: E731
    lines = ["{"]
    items = list(record.items())
    for i, (key, value) in enumerate(items):
        end = "," if i + 1 < len(items) else ""
        if isinstance(value, list) and value and isinstance(value[0], dict):
            rows = ",\n".join("  " + dump(v) for v in value)
            lines.append(f" {dump(key)}: [\n{rows}\n ]{end}")
        else:
            lines.append(f" {dump(key)}: {dump(value)}{end}")
    return "\n".join(lines) + "\n}\n"


def build(family, backend, kwargs, generation, save_jinja_files):
    out = os.path.join(OUT, family)
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    backend_tokenizer = backend()
    PreTrainedTokenizerFast(tokenizer_object=backend_tokenizer, **kwargs).save_pretrained(
        out, save_jinja_files=save_jinja_files
    )
    tok = AutoTokenizer.from_pretrained(out)
    eos_ids = [tok.convert_tokens_to_ids(t) for t in generation.pop("eos_token_ids")]
    GenerationConfig(
        bos_token_id=tok.bos_token_id,
        eos_token_id=eos_ids if len(eos_ids) > 1 else eos_ids[0],
        **generation,
    ).save_pretrained(out)
    cases = []
    for name, messages in CONVERSATIONS + [NOT_ALTERNATING]:
        for add_generation_prompt in (True, False):
            case = {"name": name, "messages": messages, "add_generation_prompt": add_generation_prompt}
            try:
                case["text"] = tok.apply_chat_template(
                    messages, add_generation_prompt=add_generation_prompt, tokenize=False
                )
                case["ids"] = input_ids(
                    tok.apply_chat_template(messages, add_generation_prompt=add_generation_prompt, tokenize=True)
                )
            except Exception as e:  # the template's raise_exception
                case["error"] = str(e)
            cases.append(case)
    plain = [{"text": t, "ids": tok(t)["input_ids"]} for t in PLAIN]
    stops = GenerationConfig.from_pretrained(out).eos_token_id
    record = {
        "transformers": transformers.__version__,
        "cases": cases,
        "plain": plain,
        "eos_token_ids": stops if isinstance(stops, list) else [stops],
    }
    with open(os.path.join(out, "cases.json"), "w", encoding="utf-8") as fh:
        fh.write(compact(record))
    bos = [c["ids"][0] == tok.bos_token_id for c in cases if "ids" in c and tok.bos_token_id is not None]
    errors = sum("error" in c for c in cases)
    print(f"{family}: {len(cases)} cases ({errors} refused), BOS first in {sum(bos)}, plain {plain[0]['ids'][:3]}")
    return out


def main():
    transformers.utils.logging.set_verbosity_error()
    for spec in FAMILIES:
        build(*spec)
    total = sum(
        os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(OUT) for f in files
    )
    print(f"tests/fixtures/chat: {total} bytes")
    assert total < 300_000, total


if __name__ == "__main__":
    main()
