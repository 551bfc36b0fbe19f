//! Structs that are read from JSON objects only.
//!
//! `#[derive(Deserialize)]` makes a struct readable from a JSON object and also from a JSON
//! array of its field values in declaration order (serde's sequence form). Nothing we read is
//! written that way: the configuration, and the records we seal or cache ourselves, are
//! objects. The sequence form still costs a second copy of every struct's field handling in
//! the `.wasm` (about 54 KB over the 42 structs that opt out).
//!
//! A struct opts out with `#[serde(remote = "Self")]` next to its derives (the derives then
//! generate inherent `deserialize` / `serialize` functions instead of the trait impls) and
//! `json_object!(Type)` after it (or `json_object!(Type, Serialize)` when it derives both),
//! which implements the traits with them, asking the deserializer for a map where the derive
//! asks for a struct. Every error an object gets stays the same, word for word; an array is
//! refused as `invalid type: sequence, expected struct Type`.
//!
//! Not for structs read through `#[serde(flatten)]` or untagged enums: there, a map request
//! takes every remaining key, a struct request only its own fields.

use serde::de::{Deserializer, Visitor};

/// A deserializer that answers a struct request with a map request to the one it wraps.
pub struct ObjectOnly<D>(pub D);

impl<'de, D: Deserializer<'de>> Deserializer<'de> for ObjectOnly<D> {
    type Error = D::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_any(visitor)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_map(visitor)
    }

    fn is_human_readable(&self) -> bool {
        self.0.is_human_readable()
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

/// `Deserialize` (and with `Serialize`, that too) for a struct derived with
/// `#[serde(remote = "Self")]`: see the module documentation.
macro_rules! json_object {
    ($ty:ident) => {
        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                $ty::deserialize($crate::json_object::ObjectOnly(deserializer))
            }
        }
    };
    ($ty:ident, Serialize) => {
        json_object!($ty);
        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                $ty::serialize(self, serializer)
            }
        }
    };
}
