"""Security detections: rules over normalised agent events, each match a new log record.

``rules`` holds the rule-file format and the matching (pure functions of an event's fields),
``processor`` the ``detections`` component and its factory, ``config`` its configuration and
``rules_test`` the ``agentwatch rules test`` command. Format and default rules:
docs/detections.md.
"""
