//! The check that a handler is declared at module level.
//!
//! Its module's items are useless inside a function body, and its
//! registration would be spooky there. The generated module checks this by
//! glob-importing its parent (`use super::*`) and calling a method: at
//! module level the parent holds the site's trait ([`module_level_site`]),
//! whose method (taking `self` by value) wins; in a function body `super`
//! skips the body, so only the fallback for `&T` applies, and its result
//! fails an `on_unimplemented` bound with one message at the function's
//! name ([`module_level_check`]).

use super::Gen;
use quote::{format_ident, quote, quote_spanned};
use syn::ext::IdentExt;

/// Beside the function: the trait `__asyncjobs_<fn>_AtModuleLevel`,
/// implemented for `<fn>::__Key`.
pub(super) fn module_level_site(g: &Gen) -> proc_macro2::TokenStream {
    let Gen {
        private, fn_name, ..
    } = g;
    let level_trait = format_ident!("__asyncjobs_{}_AtModuleLevel", fn_name.unraw());
    quote! {
        #[doc(hidden)]
        #[allow(non_camel_case_types, dead_code)]
        trait #level_trait {
            fn __asyncjobs_module_level(self) -> #private::ModuleLevel;
        }

        impl #level_trait for #fn_name::__Key {
            fn __asyncjobs_module_level(self) -> #private::ModuleLevel {
                #private::ModuleLevel
            }
        }
    }
}

/// Inside the module: the call that picks the site's method, spanned at the
/// function's name.
pub(super) fn module_level_check(g: &Gen) -> proc_macro2::TokenStream {
    let span = g.fn_name.span();
    let p = g.private_at(span);
    quote_spanned! {span=>
        #[allow(unused_imports, dead_code, clippy::all, clippy::pedantic)]
        const _: () = {
            use super::*;
            use #p::NotAtModuleLevel as _;
            fn __asyncjobs_check_module_level() {
                #p::assert_module_level(self::__Key.__asyncjobs_module_level());
            }
        };
    }
}
