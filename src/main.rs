fn main() {
    print!("{}", benchrun::api::crd_yaml().unwrap());
}
