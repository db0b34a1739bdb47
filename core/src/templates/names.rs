//! Template names: slugs unique in a workspace, some reserved, and readable random names
//! for templates created without one.
