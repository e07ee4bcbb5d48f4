//! Tags: names for groups of entries ("surrogate keys"), so that one
//! `invalidate_tag` can remove every entry that depends on, say, `user:42`.

use std::fmt;

/// A tag an entry can carry. Built from a string or an integer:
/// `Tag::from("user:42")`, `Tag::from(42u64)`; APIs that take tags accept
/// anything `Into<Tag>`, so `["user:42"]` or `[7u64]` just work.
///
/// A string tag and an integer tag never equal each other, even when they
/// print the same (`"7"` and `7` are different tags).
///
/// ```
/// use coherent_shard::Tag;
/// assert_eq!(Tag::from("user:42"), Tag::from(String::from("user:42")));
/// assert_ne!(Tag::from("7"), Tag::from(7u64));
/// assert_eq!(Tag::from(7u64).to_string(), "7");
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Tag(Repr);

#[derive(Clone, PartialEq, Eq, Hash)]
enum Repr {
    Int(u64),
    Str(Box<str>),
}

impl From<&str> for Tag {
    fn from(s: &str) -> Self {
        Tag(Repr::Str(s.into()))
    }
}

impl From<String> for Tag {
    fn from(s: String) -> Self {
        Tag(Repr::Str(s.into_boxed_str()))
    }
}

impl From<&String> for Tag {
    fn from(s: &String) -> Self {
        Tag::from(s.as_str())
    }
}

impl From<u64> for Tag {
    fn from(n: u64) -> Self {
        Tag(Repr::Int(n))
    }
}

impl From<&Tag> for Tag {
    fn from(t: &Tag) -> Self {
        t.clone()
    }
}

impl Tag {
    /// The integer this tag was made from, if it was made from one.
    ///
    /// ```
    /// use coherent_shard::Tag;
    /// assert_eq!(Tag::from(7u64).as_int(), Some(7));
    /// assert_eq!(Tag::from("7").as_int(), None);
    /// ```
    pub fn as_int(&self) -> Option<u64> {
        match &self.0 {
            Repr::Int(n) => Some(*n),
            Repr::Str(_) => None,
        }
    }

    /// The string this tag was made from, if it was made from one.
    ///
    /// ```
    /// use coherent_shard::Tag;
    /// assert_eq!(Tag::from("user:7").as_str(), Some("user:7"));
    /// assert_eq!(Tag::from(7u64).as_str(), None);
    /// ```
    pub fn as_str(&self) -> Option<&str> {
        match &self.0 {
            Repr::Int(_) => None,
            Repr::Str(s) => Some(s),
        }
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Repr::Int(n) => write!(f, "{n}"),
            Repr::Str(s) => f.write_str(s),
        }
    }
}

impl fmt::Debug for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Repr::Int(n) => write!(f, "Tag({n})"),
            Repr::Str(s) => write!(f, "Tag({s:?})"),
        }
    }
}

/// Collects tags from anything iterable whose items convert into [`Tag`].
pub fn tags<I>(tags: I) -> Vec<Tag>
where
    I: IntoIterator,
    I::Item: Into<Tag>,
{
    tags.into_iter().map(Into::into).collect()
}
