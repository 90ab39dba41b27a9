"""The few Flight SQL protobuf messages the raw-Flight tests send and read, written by hand:
pyarrow's Flight client speaks Flight, not Flight SQL, so a user of it builds the commands
(`google.protobuf.Any`-wrapped) themselves, as these helpers do."""

PREFIX = "type.googleapis.com/arrow.flight.protocol.sql."


def varint(n):
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field(number, payload):
    """One length-delimited protobuf field (wire type 2)."""
    return varint((number << 3) | 2) + varint(len(payload)) + payload


def flag(number, value):
    """One varint field (wire type 0), e.g. a bool."""
    return varint(number << 3) + varint(int(value))


def text(number, value):
    return b"" if value is None else field(number, value.encode())


def packed(name, body=b""):
    """`body` (a serialized message named `name`) wrapped in google.protobuf.Any."""
    return field(1, (PREFIX + name).encode()) + field(2, body)


def statement_query(sql):
    """CommandStatementQuery, as every client sends a query."""
    return packed("CommandStatementQuery", text(1, sql))


def get_catalogs():
    return packed("CommandGetCatalogs")


def get_db_schemas(catalog=None, schema_pattern=None):
    return packed("CommandGetDbSchemas", text(1, catalog) + text(2, schema_pattern))


def get_tables(catalog=None, schema_pattern=None, table_pattern=None, include_schema=False):
    body = text(1, catalog) + text(2, schema_pattern) + text(3, table_pattern)
    return packed("CommandGetTables", body + (flag(5, True) if include_schema else b""))


def get_sql_info():
    return packed("CommandGetSqlInfo")


def create_prepared_statement(sql):
    return packed("ActionCreatePreparedStatementRequest", text(1, sql))


def prepared_statement_query(handle):
    return packed("CommandPreparedStatementQuery", field(1, handle))


def close_prepared_statement(handle):
    return packed("ActionClosePreparedStatementRequest", field(1, handle))


def read_fields(buf):
    """A message's fields: {number: [bytes or int, …]} (wire types 0 and 2 only)."""
    out, i = {}, 0

    def read_varint():
        nonlocal i
        shift = n = 0
        while True:
            byte = buf[i]
            i += 1
            n |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return n

    while i < len(buf):
        key = read_varint()
        number, wire = key >> 3, key & 7
        if wire == 0:
            value = read_varint()
        elif wire == 2:
            length = read_varint()
            value, i = bytes(buf[i : i + length]), i + length
        else:
            raise ValueError(f"wire type {wire} is not read here")
        out.setdefault(number, []).append(value)
    return out


def unpacked(buf, name):
    """The fields of an Any-wrapped message, checking it is `name`."""
    any_ = read_fields(buf)
    type_url = any_[1][0].decode()
    if type_url != PREFIX + name:
        raise ValueError(f"expected {name}, got {type_url}")
    return read_fields(any_.get(2, [b""])[0])
