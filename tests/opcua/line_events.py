"""What every asyncua client of ours needs to receive the kiosk's SignedIn
and SignedOut events (tests/opcua/test_opcua_line.py and line_client.py, the
client that hmi/tests/opcua_line.rs drives)."""

from asyncua import ua


async def session_event_filter(client, ns):
    """An EventFilter for our two event types: their fields, and a where
    clause `OfType SignedInEventType Or OfType SignedOutEventType`.

    Not asyncua's default (`EventType InList [...]`): async-opcua 0.19
    compares only numbers and booleans in Equals/InList, so a where clause
    that compares NodeIds never matches there; OfType is evaluated against
    the server's type tree (see opcua/README.md)."""
    from asyncua.common.events import select_clauses_from_evtype

    types = [client.get_node(ua.NodeId(f"KubeVision.{t}EventType", ns)) for t in ["SignedIn", "SignedOut"]]
    event_filter = ua.EventFilter()
    event_filter.SelectClauses = await select_clauses_from_evtype(types)
    where = ua.ContentFilter()
    where.Elements.append(
        ua.ContentFilterElement(
            FilterOperator=ua.FilterOperator.Or,
            FilterOperands=[ua.ElementOperand(Index=1), ua.ElementOperand(Index=2)],
        )
    )
    for t in types:
        where.Elements.append(
            ua.ContentFilterElement(
                FilterOperator=ua.FilterOperator.OfType,
                FilterOperands=[ua.LiteralOperand(Value=ua.Variant(t.nodeid))],
            )
        )
    event_filter.WhereClause = where
    return event_filter
