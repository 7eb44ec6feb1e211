"""Constrained generation on SmolLM2-135M-Instruct: six schemas x 20 prompts, every finished output valid.

The schemas cover nested objects, enums, integer and number ranges, arrays with min/max items, strings
with patterns and lengths, and optional fields. Decoding is greedy on the default backend, so the counts
below are exact; an output that ran out of tokens must say so (finish_reason "length") and is never valid.
"""

from __future__ import annotations

import json

import jsonschema
import pytest

import edge_sdk

pytestmark = [pytest.mark.real_model, pytest.mark.slow]
pytest.importorskip("llguidance")

ROBOT = {"type": "object", "properties": {
    "action": {"enum": ["forward", "back", "left", "right", "stop"]},
    "speed": {"type": "integer", "minimum": 0, "maximum": 100},
    "say": {"type": "string", "maxLength": 40}},
    "required": ["action", "speed"], "additionalProperties": False}
PERSON = {"type": "object", "properties": {
    "name": {"type": "string", "minLength": 1, "maxLength": 30},
    "age": {"type": "integer", "minimum": 0, "maximum": 120},
    "address": {"type": "object", "properties": {
        "city": {"type": "string", "minLength": 1, "maxLength": 30},
        "zip": {"type": "string", "pattern": "^[0-9]{5}$"}},
        "required": ["city", "zip"], "additionalProperties": False}},
    "required": ["name", "age", "address"], "additionalProperties": False}
COLORS = {"type": "object", "properties": {
    "colors": {"type": "array", "items": {"enum": ["red", "green", "blue", "white", "black", "yellow"]},
               "minItems": 1, "maxItems": 3}},
    "required": ["colors"], "additionalProperties": False}
WEATHER = {"type": "object", "properties": {
    "temperature": {"type": "number", "minimum": -50, "maximum": 60},
    "unit": {"enum": ["C", "F"]},
    "raining": {"type": "boolean"}},
    "required": ["temperature", "unit"], "additionalProperties": False}
TICKET = {"type": "object", "properties": {
    "code": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{2}$"},
    "title": {"type": "string", "minLength": 3, "maxLength": 24},
    "priority": {"enum": ["low", "medium", "high"]},
    "note": {"type": "string", "maxLength": 20}},
    "required": ["code", "title"], "additionalProperties": False}
STEPS = {"type": "object", "properties": {
    "steps": {"type": "array", "minItems": 2, "maxItems": 4, "items": {
        "type": "object", "properties": {"do": {"type": "string", "minLength": 2, "maxLength": 20},
                                         "minutes": {"type": "integer", "minimum": 1, "maximum": 60}},
        "required": ["do", "minutes"], "additionalProperties": False}}},
    "required": ["steps"], "additionalProperties": False}

PROMPTS = {
    "robot": ["go back slowly", "turn right", "stop now", "drive forward at half speed", "there is a person ahead",
              "the goal is behind you", "move forward a little", "turn left quickly", "the road ahead is free",
              "back up fast", "a cat crossed the path", "park the robot", "follow the wall on the left",
              "speed up", "we are late, hurry", "the floor is wet", "spin around", "approach the table",
              "greet the visitor and stop", "go to the kitchen"],
    "person": ["Anna is 34 and lives in Lyon, 69001.", "Describe a person from Paris.", "Bob, 71, Nice 06000.",
               "Make up a teenager living in Lille.", "My grandmother is 90 and lives in Brest.",
               "A doctor in Marseille, 13001.", "Invent a customer record.", "Tom is a student in Toulouse.",
               "The mayor of Bordeaux.", "A child of 7 from Nantes.", "Who lives at 75011 Paris?",
               "Describe a farmer in the Alps.", "A 45-year-old engineer in Grenoble.", "A baker in Dijon.",
               "My neighbour, aged 52.", "A pilot from Strasbourg.", "Someone born this year.",
               "A retired teacher in Rennes.", "The oldest person in Montpellier.", "A musician in Lens, 62300."],
    "colors": ["the flag of France", "a sunny day", "the sea at night", "a forest", "snow", "a tiger",
               "a zebra", "grass and sky", "a banana", "fire", "the night sky", "a lemon tree", "a police car",
               "milk", "coal", "a rainbow's first colours", "an apple", "the flag of Italy", "a cloud", "a bee"],
    "weather": ["It is hot in Madrid today.", "Freezing in Oslo.", "A rainy day in London.", "Summer in Cairo.",
                "What is the weather at the North Pole?", "Mild spring weather.", "A storm is coming.",
                "Paris in winter.", "A desert at noon.", "A cool autumn morning.", "Give today's weather.",
                "Tropical rain in Bali.", "Snow in the mountains.", "A heat wave.", "A foggy harbour.",
                "Weather for a picnic.", "Night in Moscow in January.", "Room temperature.", "Fahrenheit, please.",
                "Drizzle in Dublin."],
    "ticket": ["The printer is broken.", "I cannot log in.", "The website is slow.", "Order a new laptop.",
               "The coffee machine leaks.", "Reset my password.", "The door badge does not work.",
               "A spelling mistake on the home page.", "Server room is too hot.", "Add a user to the team.",
               "The app crashes on start.", "Update the price list.", "Email is not syncing.",
               "Fix the broken chair.", "The wifi drops every hour.", "Back up the database.",
               "The lift is stuck.", "Renew the certificate.", "A customer wants a refund.", "The screen flickers."],
    "steps": ["How do I make tea?", "Plan a short workout.", "Steps to bake bread.", "How to clean a room.",
              "Prepare for an exam.", "Wash a car.", "Plant a tree.", "Cook pasta.", "Pack for a trip.",
              "Paint a wall.", "Make a sandwich.", "Do the laundry.", "Fix a flat tyre.", "Write a letter.",
              "Brew coffee.", "Walk the dog.", "Make a salad.", "Clean the windows.", "Set up a tent.",
              "Boil an egg."],
}
SCHEMAS = {"robot": ROBOT, "person": PERSON, "colors": COLORS, "weather": WEATHER, "ticket": TICKET, "steps": STEPS}
MAX_TOKENS = 96
# outputs (of 20) that finished within MAX_TOKENS, greedy, native core; the rest must report "length"
COMPLETED = {"robot": 20, "person": 20, "colors": 20, "weather": 20, "ticket": 20, "steps": 14}
# of the 20 robot commands with few-shot compact answers, greedy answers that validate without the constraint
FITS_UNCONSTRAINED = 14


@pytest.fixture(scope="module")
def smollm(real_gguf_path):
    with edge_sdk.load(real_gguf_path, ctx=1024) as m:
        yield m


@pytest.mark.parametrize("name", list(SCHEMAS))
def test_every_finished_output_validates(smollm, name):
    schema = SCHEMAS[name]
    rf = {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}}
    assert len(PROMPTS[name]) == 20
    completed = 0
    for prompt in PROMPTS[name]:
        out = smollm.chat([{"role": "user", "content": prompt}], response_format=rf, max_tokens=MAX_TOKENS)
        s = smollm.last_stats
        if s["finish_reason"] == "stop":
            assert s["constraint"] == "satisfied", (prompt, out)
            jsonschema.validate(json.loads(out), schema)
            completed += 1
        else:
            assert (s["finish_reason"], s["constraint"]) == ("length", "incomplete"), (prompt, out, s)
    assert completed == COMPLETED[name]


FEW_SHOT_SYSTEM = "You steer a robot. Reply with one JSON object on one line, with no spaces, keys action and speed."
FEW_SHOT = [("the path is clear, go fast", '{"action":"forward","speed":80}'),
            ("there is a wall ahead", '{"action":"stop","speed":0}'),
            ("the goal is to your left", '{"action":"left","speed":30}')]


def test_an_answer_that_already_fits_is_not_changed(smollm):
    """Where the greedy answer without the constraint already validates, the constrained one is the same text
    (the model is shown compact answers: the constraint writes JSON compactly)."""
    rf = {"type": "json_schema", "json_schema": {"name": "robot", "schema": ROBOT}}
    fits = same = 0
    for command in PROMPTS["robot"]:
        messages = [{"role": "system", "content": FEW_SHOT_SYSTEM}]
        for user, assistant in FEW_SHOT:
            messages += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
        messages.append({"role": "user", "content": command})
        free = smollm.chat(messages, max_tokens=40)
        try:
            jsonschema.validate(json.loads(free), ROBOT)
        except (ValueError, jsonschema.ValidationError):
            continue
        fits += 1
        same += smollm.chat(messages, max_tokens=40, response_format=rf) == free
    assert fits == FITS_UNCONSTRAINED and same == fits

