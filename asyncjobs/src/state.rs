//! Shared state for handlers: database pools, HTTP clients, mailers.
//!
//! Register a value once, and every handler that takes a [`State<T>`]
//! argument of its type gets a clone of it, as axum's `State` extractor
//! does:
//!
//! ```
//! mod jobs {
//!     use asyncjobs::{task_handler, HandlerError, State};
//!     use std::sync::Arc;
//!
//!     /// Something expensive to create and cheap to clone.
//!     #[derive(Clone)]
//!     pub struct Mailer(pub Arc<String>);
//!
//!     #[task_handler("email:send")]
//!     pub async fn send(State(mailer): State<Mailer>, to: String) -> Result<String, HandlerError> {
//!         Ok(format!("{to} sent through {}", mailer.0))
//!     }
//! }
//!
//! # fn main() -> asyncjobs::Result<()> {
//! use asyncjobs::{Router, States};
//!
//! // with asyncjobs::main!(state = jobs::Mailer(...)), or by hand:
//! let router = Router::new()
//!     .with_state(jobs::Mailer(std::sync::Arc::new("smtp.example.net".into())))
//!     .register(jobs::send::HANDLER)?;
//!
//! // a missing state is an error when the handler is registered, naming both
//! let err = Router::new().register(jobs::send::HANDLER).unwrap_err();
//! assert!(err.to_string().contains("State<") && err.to_string().contains("jobs::Mailer"), "{err}");
//!
//! // the states of a program, looked up by type
//! let states = States::new().with(42_u32).with("name");
//! assert_eq!(states.get::<u32>(), Some(&42));
//! # Ok(()) }
//! ```
//!
//! States are looked up once, when a handler is registered (at worker
//! start-up), never per task. Each task's handler call gets its own clone,
//! so a state should be cheap to clone: an `Arc`, a pool handle, a client
//! that is itself a handle.
//!
//! Handlers written without the macro take their states from the same
//! [`States`] when they are built:
//!
//! ```
//! use asyncjobs::{typed, HandlerError, Router, State, States};
//!
//! #[derive(Clone)]
//! struct Mailer(&'static str);
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let states = States::new().with(Mailer("smtp.example.net"));
//! let State(mailer) = State::<Mailer>::from_states(&states)?;
//! let router = Router::new().handle("email:send", typed(move |_ctx, to: String| {
//!     let mailer = mailer.clone();
//!     async move { Ok::<_, HandlerError>(format!("{to} via {}", mailer.0)) }
//! }))?;
//! # Ok(()) }
//! ```

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

/// A handler argument taken from the registered [`States`] by type.
///
/// Write it as a pattern to get the value directly:
/// `async fn h(State(db): State<Db>, payload: P)`. `T` must be
/// `Clone + Send + Sync + 'static`; it is cloned for every task.
///
/// In a `#[task_handler]` function any number of `State<_>` arguments may
/// appear, in any position. Register the values with
/// `asyncjobs::main!(state = value)`, [`program::App::state`](crate::program::App::state),
/// [`Router::with_state`](crate::Router::with_state) or [`States::with`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct State<T>(pub T);

impl<T> std::ops::Deref for State<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> std::ops::DerefMut for State<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

impl<T: Clone + Send + Sync + 'static> State<T> {
    /// The registered value of type `T`, cloned, or a [`MissingState`]
    /// naming `T` when there is none (its handler fields are left empty;
    /// [`HandlerDef::handler_with`](crate::HandlerDef::handler_with) fills
    /// them in).
    pub fn from_states(states: &States) -> Result<State<T>, MissingState> {
        states
            .get::<T>()
            .map(|v| State(v.clone()))
            .ok_or_else(MissingState::of::<T>)
    }
}

/// Values shared by handlers, at most one per type.
///
/// Cloning is cheap (the values are behind an `Arc` each).
#[derive(Clone, Default)]
pub struct States {
    values: HashMap<TypeId, Entry>,
}

#[derive(Clone)]
struct Entry {
    name: &'static str,
    value: Arc<dyn Any + Send + Sync>,
}

impl fmt::Debug for States {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&str> = self.values.values().map(|e| e.name).collect();
        names.sort_unstable();
        f.debug_struct("States").field("types", &names).finish()
    }
}

impl States {
    /// No states.
    pub fn new() -> States {
        States::default()
    }

    /// Adds `value`; a value of the same type added before is replaced.
    pub fn with<T: Clone + Send + Sync + 'static>(mut self, value: T) -> States {
        self.insert(value);
        self
    }

    /// Adds `value`, returning the value of the same type it replaces.
    pub fn insert<T: Clone + Send + Sync + 'static>(&mut self, value: T) -> Option<T> {
        let old = self.values.insert(
            key::<T>(),
            Entry {
                name: std::any::type_name::<T>(),
                value: Arc::new(value),
            },
        );
        old.and_then(|e| e.value.downcast_ref::<T>().cloned())
    }

    /// Adds every value of `other`, replacing values of the same types.
    pub fn extend(&mut self, other: &States) {
        self.values
            .extend(other.values.iter().map(|(k, v)| (*k, v.clone())));
    }

    /// The value of type `T`, if one was added.
    pub fn get<T: 'static>(&self) -> Option<&T> {
        self.values
            .get(&key::<T>())
            .and_then(|e| e.value.downcast_ref::<T>())
    }

    /// True when a value was added for the argument type `State<T>` that
    /// `state_arg` identifies (`TypeId::of::<State<T>>()`).
    pub(crate) fn contains_arg(&self, state_arg: TypeId) -> bool {
        self.values.contains_key(&state_arg)
    }

    /// The type names of the values, sorted.
    pub fn type_names(&self) -> Vec<&'static str> {
        let mut names: Vec<&'static str> = self.values.values().map(|e| e.name).collect();
        names.sort_unstable();
        names
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// True when no value was added.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

/// Values are keyed by their argument type, `State<T>`, which is what the
/// handler declarations record.
fn key<T: 'static>() -> TypeId {
    TypeId::of::<State<T>>()
}

/// A handler takes a [`State<T>`] for which no value of type `T` was
/// registered.
///
/// Its message names the type, the handler and how to register the value,
/// for example: ``handler shop::send_email (task type "email:new",
/// src/lib.rs:12) takes State<shop::Mailer>, but no shop::Mailer was
/// registered: add one with `asyncjobs::main!(state = ...)`,
/// `App::state(...)` or `Router::with_state(...)` ``.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingState {
    /// The missing type, as `std::any::type_name` gives it.
    pub type_name: &'static str,
    /// The handler's function path (empty when not known).
    pub handler: &'static str,
    /// The handler's task type.
    pub task_type: &'static str,
    /// Where the handler is declared, `file:line` (empty when not known).
    pub location: String,
}

impl MissingState {
    /// A missing `T`, for no handler in particular.
    pub fn of<T: 'static>() -> MissingState {
        MissingState {
            type_name: std::any::type_name::<T>(),
            handler: "",
            task_type: "",
            location: String::new(),
        }
    }
}

impl fmt::Display for MissingState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ty = self.type_name;
        if self.handler.is_empty() {
            write!(f, "a handler takes State<{ty}>")?;
        } else {
            write!(
                f,
                "handler {} (task type {:?}, {}) takes State<{ty}>",
                self.handler, self.task_type, self.location
            )?;
        }
        write!(
            f,
            ", but no {ty} was registered: add one with `asyncjobs::main!(state = ...)`, \
             `program::App::state(...)` or `Router::with_state(...)`"
        )
    }
}

impl std::error::Error for MissingState {}

/// Several [`MissingState`]s: every state every handler lacks, reported
/// together when a worker refuses to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingStates(pub Vec<MissingState>);

impl fmt::Display for MissingStates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, m) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{m}")?;
        }
        Ok(())
    }
}

impl std::error::Error for MissingStates {}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Debug, PartialEq)]
    struct Db(&'static str);

    #[test]
    fn looked_up_by_type() {
        let mut states = States::new().with(Db("a")).with(7_u8);
        assert_eq!(states.get::<Db>(), Some(&Db("a")));
        assert_eq!(states.get::<u8>(), Some(&7));
        assert_eq!(states.get::<u16>(), None);
        assert_eq!(states.insert(Db("b")), Some(Db("a")));
        assert_eq!(states.len(), 2);
        assert_eq!(State::<Db>::from_states(&states).unwrap(), State(Db("b")));
        let missing = State::<u16>::from_states(&states).unwrap_err();
        assert_eq!(missing.type_name, "u16");
        assert!(
            missing.to_string().contains("no u16 was registered"),
            "{missing}"
        );
        assert!(format!("{states:?}").contains("Db"));
    }
}
