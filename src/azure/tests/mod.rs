//! Integration tests of the identity sources and the ACR exchange against loopback fakes.
