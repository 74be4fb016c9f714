"""TensorFlow's ``tf.train.Example`` family of protobuf messages, without TensorFlow or protoc.

The message definitions of TensorFlow's public ``feature.proto`` and ``example.proto``
(package ``tensorflow``, proto3) are rebuilt here as a ``FileDescriptorProto`` and turned
into Python classes by :mod:`google.protobuf.message_factory`. The classes live in a
private descriptor pool, so they never clash with TensorFlow's own classes when both are
imported in one process, yet they use the same full names and field numbers and so read
and write the same bytes.

Exports: :class:`Example`, :class:`SequenceExample`, :class:`Features`, :class:`Feature`,
:class:`FeatureList`, :class:`FeatureLists`, :class:`BytesList`, :class:`FloatList`,
:class:`Int64List`.
"""

from __future__ import annotations

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_PACKAGE = "tensorflow"
_F = descriptor_pb2.FieldDescriptorProto


def _field(message, name: str, number: int, kind: int, *, repeated: bool = False,
           type_name: str | None = None, oneof_index: int | None = None) -> None:
    field = message.field.add(name=name, number=number, type=kind,
                              label=_F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL)
    if type_name is not None:
        field.type_name = f".{_PACKAGE}.{type_name}"
    if oneof_index is not None:
        field.oneof_index = oneof_index


def _map_field(message, name: str, value_type: str) -> None:
    """``map<string, value_type> name = 1`` — protobuf encodes it as a repeated nested entry message."""
    entry_name = "".join(part.capitalize() for part in name.split("_")) + "Entry"
    entry = message.nested_type.add(name=entry_name)
    entry.options.map_entry = True
    _field(entry, "key", 1, _F.TYPE_STRING)
    _field(entry, "value", 2, _F.TYPE_MESSAGE, type_name=value_type)
    _field(message, name, 1, _F.TYPE_MESSAGE, repeated=True, type_name=f"{message.name}.{entry_name}")


def _build_file() -> descriptor_pb2.FileDescriptorProto:
    file = descriptor_pb2.FileDescriptorProto(
        name="videopool/tensorflow_example.proto", package=_PACKAGE, syntax="proto3"
    )
    add = file.message_type.add

    _field(add(name="BytesList"), "value", 1, _F.TYPE_BYTES, repeated=True)
    _field(add(name="FloatList"), "value", 1, _F.TYPE_FLOAT, repeated=True)  # proto3: packed by default
    _field(add(name="Int64List"), "value", 1, _F.TYPE_INT64, repeated=True)

    feature = add(name="Feature")
    feature.oneof_decl.add(name="kind")
    _field(feature, "bytes_list", 1, _F.TYPE_MESSAGE, type_name="BytesList", oneof_index=0)
    _field(feature, "float_list", 2, _F.TYPE_MESSAGE, type_name="FloatList", oneof_index=0)
    _field(feature, "int64_list", 3, _F.TYPE_MESSAGE, type_name="Int64List", oneof_index=0)

    _map_field(add(name="Features"), "feature", "Feature")
    _field(add(name="FeatureList"), "feature", 1, _F.TYPE_MESSAGE, repeated=True, type_name="Feature")
    _map_field(add(name="FeatureLists"), "feature_list", "FeatureList")

    _field(add(name="Example"), "features", 1, _F.TYPE_MESSAGE, type_name="Features")
    sequence = add(name="SequenceExample")
    _field(sequence, "context", 1, _F.TYPE_MESSAGE, type_name="Features")
    _field(sequence, "feature_lists", 2, _F.TYPE_MESSAGE, type_name="FeatureLists")
    return file


_POOL = descriptor_pool.DescriptorPool()
_FILE = _POOL.Add(_build_file())


def _message_class(name: str):
    return message_factory.GetMessageClass(_POOL.FindMessageTypeByName(f"{_PACKAGE}.{name}"))


BytesList = _message_class("BytesList")
FloatList = _message_class("FloatList")
Int64List = _message_class("Int64List")
Feature = _message_class("Feature")
Features = _message_class("Features")
FeatureList = _message_class("FeatureList")
FeatureLists = _message_class("FeatureLists")
Example = _message_class("Example")
SequenceExample = _message_class("SequenceExample")
